//! The code's layout rules, checked on the source text: top-level modules import each
//! other in one direction only (no circles), all SQL lives under `src/db/`, and no
//! source file grows past about 500 lines. Each failure names the file or the circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::docs::rust_files;

/// The line count above which a file is split by concern (docs/ARCHITECTURE.md).
const MAX_LINES: usize = 500;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Each source file with its path relative to `src/` and its text.
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src())
                .expect("below src/")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {rel}: {e}"));
            (rel, text)
        })
        .collect()
}

/// The code of a file without its comments (a doc comment may name any module).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// The top-level module a file belongs to: `api` for `api/jobs/list.rs` and `metrics`
/// for `metrics.rs`.
fn top_module(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_owned()
}

/// Which top-level modules each top-level module names as `crate::<module>`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in sources() {
        let from = top_module(&rel);
        if from == "main" || from == "lib" {
            continue;
        }
        let entry = graph.entry(from.clone()).or_default();
        for line in code_lines(&text) {
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != from {
                    entry.insert(name);
                }
            }
        }
    }
    graph
}

/// A circle through `graph` as the modules in order, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_each_other_in_one_direction_only() {
    let graph = imports();
    assert!(
        graph.get("cli").is_some_and(|d| d.contains("app")),
        "the reading of the source finds imports (cli uses app): {graph:?}"
    );
    if let Some(circle) = find_circle(&graph) {
        panic!(
            "an import circle between top-level modules: {} (move what both need below both)",
            circle.join(" -> ")
        );
    }
}

#[test]
fn the_circle_finder_finds_a_circle_of_three() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn every_sql_statement_lives_under_src_db() {
    let outside: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, _)| !rel.starts_with("db/"))
        .filter(|(_, text)| {
            code_lines(text).any(|l| {
                [
                    "sqlx::query",
                    "query_as(",
                    "query_scalar(",
                    "query_as::<",
                    "query_scalar::<",
                ]
                .iter()
                .any(|needle| l.contains(needle))
            })
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        outside.is_empty(),
        "SQL outside src/db/ (move the statement into the db module that owns its table): {outside:?}"
    );
}

#[test]
fn no_source_file_is_over_500_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(rel, text)| format!("src/{rel} ({} lines)", text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "split these by concern into a folder of files: {long:?}"
    );
}

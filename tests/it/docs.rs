//! The documentation against the code, for what a program can check: the README's
//! command list against the CLI's own help, every flag the docs show against the
//! command it is shown with, the environment variables read against
//! docs/CONFIGURATION.md and .env.example, and the paths in docs/API.md against the
//! OpenAPI document. No Postgres: the binary's `--help` and an unconnected pool suffice.
//! Each failure says what to write where.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::binary;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// README.md and every page under docs/, with their names.
fn doc_pages() -> Vec<(String, String)> {
    let mut pages = vec![("README.md".to_owned(), read("README.md"))];
    let mut names: Vec<_> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for n in names {
        let rel = format!("docs/{n}");
        let text = read(&rel);
        pages.push((rel, text));
    }
    pages
}

/// The pieces of a page that are code: every line of a fenced block (without a trailing
/// `# comment`), and every `inline code` span elsewhere.
fn code_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let code = match line.find(" #") {
                Some(i) => &line[..i],
                None => line,
            };
            pieces.push(code.to_owned());
        } else {
            pieces.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    pieces
}

/// One command of the CLI as its help describes it.
#[derive(Debug, Default)]
struct CliCommand {
    subcommands: BTreeMap<String, CliCommand>,
    flags: BTreeSet<String>,
}

/// The entries of one section (`Commands:`, `Options:`) of a clap help text: the first
/// word of each line indented by two spaces.
fn help_section<'a>(help: &'a str, section: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| l.trim() != section)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

fn cli_command(path: &[&str]) -> CliCommand {
    let out = Command::new(binary())
        .args(path)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run ordinaut --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ordinaut {path:?} --help failed: {help}"
    );
    let mut cmd = CliCommand::default();
    for line in help.lines() {
        // "  -h, --help", "      --queues <QUEUES>"
        let t = line.trim_start();
        // A short form first ("-h, "): the long one follows.
        let t = match t.get(2..) {
            Some(rest) if t.starts_with('-') && !t.starts_with("--") && rest.starts_with(", ") => {
                &rest[2..]
            }
            _ => t,
        };
        if let Some(flag) = t.strip_prefix("--") {
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if line.starts_with("  ") && !name.is_empty() {
                cmd.flags.insert(name);
            }
        }
    }
    for name in help_section(&help, "Commands:") {
        if name == "help" {
            continue;
        }
        let mut sub = path.to_vec();
        sub.push(name);
        cmd.subcommands.insert(name.to_owned(), cli_command(&sub));
    }
    cmd
}

/// Every command that does something, as "jobs enqueue", "dev".
fn leaf_commands(cmd: &CliCommand, prefix: &str, out: &mut BTreeSet<String>) {
    for (name, sub) in &cmd.subcommands {
        let path = format!("{prefix}{name}").trim().to_owned();
        if sub.subcommands.is_empty() {
            out.insert(path);
        } else {
            leaf_commands(sub, &format!("{path} "), out);
        }
    }
}

/// The README's command table: rows whose first cell is `ordinaut GROUP SUB`, then more
/// `SUB`s of the same group.
fn readme_commands() -> BTreeSet<String> {
    let readme = read("README.md");
    let mut listed = BTreeSet::new();
    for line in readme.lines() {
        let Some(cell) = line.strip_prefix("| `ordinaut ") else {
            continue;
        };
        let cell = cell.split(" |").next().unwrap_or_default();
        // "jobs enqueue`, `list`, `show`": the first span, then every other piece.
        let first = cell.split('`').next().unwrap_or_default();
        listed.insert(first.to_owned());
        let group = first.rsplit_once(' ').map(|(g, _)| g);
        for sib in cell.split('`').skip(2).step_by(2) {
            if let Some(g) = group {
                listed.insert(format!("{g} {sib}"));
            }
        }
    }
    listed
}

#[test]
fn the_readme_lists_every_command_of_the_cli_and_no_other() {
    let cli = cli_command(&[]);
    let mut commands = BTreeSet::new();
    leaf_commands(&cli, "", &mut commands);
    let listed = readme_commands();
    let missing: Vec<_> = commands.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&commands).collect();
    assert!(
        missing.is_empty(),
        "README.md's \"Commands\" table lacks {missing:?}: add a row (or a `sub` in its \
         group's row) saying what each does"
    );
    assert!(
        stale.is_empty(),
        "README.md's \"Commands\" table lists {stale:?}, which `ordinaut --help` does not \
         have: remove or rename them"
    );
}

/// The command a code piece runs (`ordinaut jobs enqueue --queue q` → "jobs enqueue")
/// and the flags it passes, for every `ordinaut …` in it.
fn shown_invocations(piece: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let words: Vec<&str> = piece.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if *w != "ordinaut" {
            continue;
        }
        let rest = &words[i + 1..];
        let end = rest
            .iter()
            .position(|w| ["|", "&&", ";", "||"].contains(w) || *w == "ordinaut")
            .unwrap_or(rest.len());
        let rest = &rest[..end];
        let path: Vec<String> = rest
            .iter()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .map(|w| (*w).to_owned())
            .collect();
        let flags = rest
            .iter()
            .filter_map(|w| w.trim_start_matches('[').strip_prefix("--"))
            .map(|f| {
                f.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect::<String>()
            })
            .filter(|f| !f.is_empty())
            .collect();
        found.push((path, flags));
    }
    found
}

#[test]
fn every_flag_the_docs_show_belongs_to_the_command_it_is_shown_with() {
    let cli = cli_command(&[]);
    let mut wrong = Vec::new();
    for (page, text) in doc_pages() {
        for piece in code_pieces(&text) {
            for (path, flags) in shown_invocations(&piece) {
                // Descend as far as the words name subcommands.
                let mut cmd = &cli;
                let mut named = Vec::new();
                for w in &path {
                    match cmd.subcommands.get(w) {
                        Some(sub) => {
                            cmd = sub;
                            named.push(w.as_str());
                        }
                        None => break,
                    }
                }
                if named.is_empty() {
                    continue; // "ordinaut" as a word, not a command
                }
                for f in flags {
                    if !cmd.flags.contains(&f) && !cli.flags.contains(&f) {
                        wrong.push(format!(
                            "{page}: `ordinaut {}` has no --{f} (in `{}`)",
                            named.join(" "),
                            piece.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "flags shown that the CLI does not accept; fix the doc or the command:\n{}",
        wrong.join("\n")
    );
}

/// Variables read from the environment that belong to the platform, not to Ordinaut's
/// configuration: nobody sets them for Ordinaut.
const PLATFORM_VARS: &[(&str, &str)] = &[
    ("PATH", "where programs are found"),
    (
        "HOSTNAME",
        "the worker's host name when the system call gives none",
    ),
    ("NOTIFY_SOCKET", "set by systemd for Type=notify units"),
];

/// Every `.rs` file below `dir`.
pub(super) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Upper-case string literals that follow `needle` in `text`: `env::var("X")`.
fn literals_after(text: &str, needle: &str) -> Vec<String> {
    text.match_indices(needle)
        .filter_map(|(i, _)| {
            let rest = text[i + needle.len()..].strip_prefix('"')?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (rest[name.len()..].starts_with('"') && !name.is_empty()).then_some(name)
        })
        .collect()
}

/// Every environment variable the code reads: the configuration's table of them
/// (`config::ENV_KEYS`) and every literal name passed to `env::var`/`env::var_os` or a
/// clap `env = "…"` attribute anywhere under src/.
fn variables_read() -> BTreeMap<String, String> {
    let mut read_at: BTreeMap<String, String> = ordinaut::config::ENV_KEYS
        .iter()
        .map(|(k, _)| ((*k).to_owned(), "src/config/load.rs ENV_KEYS".to_owned()))
        .collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let rel = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for needle in ["env::var(", "env::var_os(", "env = "] {
            for name in literals_after(&text, needle) {
                read_at.entry(name).or_insert_with(|| rel.clone());
            }
        }
    }
    for (platform, _) in PLATFORM_VARS {
        read_at.remove(*platform);
    }
    read_at
}

/// docs/CONFIGURATION.md's variable table: variable → `ordinaut.toml` key.
fn documented_variables() -> BTreeMap<String, String> {
    let text = read("docs/CONFIGURATION.md");
    let mut vars = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("| environment |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
        }
        if !in_table {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(var), Some(key)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        if let Some(var) = var.strip_prefix('`').and_then(|v| v.strip_suffix('`')) {
            vars.insert(var.to_owned(), key.trim_matches('`').to_owned());
        }
    }
    vars
}

/// Names set (or shown commented out) in .env.example.
fn env_example_variables() -> BTreeSet<String> {
    read(".env.example")
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix('#').unwrap_or(l).trim_start();
            let (name, _) = l.split_once('=')?;
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_owned())
        })
        .collect()
}

/// Variables the compose files read themselves (`${NAME…}`).
fn compose_variables() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("ops"))
        .expect("read ops/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("docker-compose") && name.ends_with(".yml")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read a compose file");
        for (i, _) in text.match_indices("${") {
            let name: String = text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                vars.insert(name);
            }
        }
    }
    vars
}

#[test]
fn every_environment_variable_read_is_documented_and_every_documented_one_is_read() {
    let read_vars = variables_read();
    let table = documented_variables();
    let example = env_example_variables();
    let compose = compose_variables();
    let mut problems = Vec::new();
    for (var, at) in &read_vars {
        if !table.contains_key(var) {
            problems.push(format!(
                "{var} (read in {at}) has no row in docs/CONFIGURATION.md's variable table: \
                 add `| `{var}` | `<ordinaut.toml key or —>` | <default> | <meaning> |`"
            ));
        }
        if !example.contains(var) {
            problems.push(format!(
                "{var} (read in {at}) is missing from .env.example: add a commented line \
                 and `{var}=<default or empty>`"
            ));
        }
    }
    for (var, key) in &table {
        if !read_vars.contains_key(var) {
            problems.push(format!(
                "docs/CONFIGURATION.md documents {var}, which nothing under src/ reads: \
                 remove the row or read it (config::ENV_KEYS)"
            ));
        }
        if let Some((_, expected)) = ordinaut::config::ENV_KEYS.iter().find(|(k, _)| k == var)
            && key != expected
        {
            problems.push(format!(
                "docs/CONFIGURATION.md gives {var} the ordinaut.toml key `{key}`; \
                 config::ENV_KEYS maps it to `{expected}`"
            ));
        }
    }
    for var in &example {
        if !read_vars.contains_key(var) && !compose.contains(var) {
            problems.push(format!(
                ".env.example sets {var}, which neither src/ nor ops/docker-compose*.yml \
                 reads: remove it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The paths of the OpenAPI document, as built from the router (no database needed).
#[tokio::test]
async fn every_api_path_is_documented_in_api_md_and_every_documented_path_is_served() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("a lazy pool");
    let config = ordinaut::config::Config::default();
    let state =
        ordinaut::api::AppState::new(pool, ordinaut::api::ApiSettings::from_config(&config));
    let doc = ordinaut::api::openapi_document(&state);
    let templates: Vec<String> = doc.paths.paths.keys().cloned().collect();
    assert!(templates.iter().any(|t| t == "/v1/jobs"), "{templates:?}");

    let mut served_by_docs: BTreeSet<&str> = BTreeSet::new();
    let mut unknown = Vec::new();
    for (page, text) in doc_pages() {
        for path in documented_paths(&text) {
            match best_template(&path, &templates) {
                Some(t) => {
                    if page == "docs/API.md" {
                        served_by_docs.insert(t);
                    }
                }
                None => unknown.push(format!("{page}: {path}")),
            }
        }
    }
    let undocumented: Vec<_> = templates
        .iter()
        .filter(|t| !served_by_docs.contains(t.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "paths in the docs that the OpenAPI document does not have (fix the doc, or serve \
         and document the path in src/api):\n{}",
        unknown.join("\n")
    );
    assert!(
        undocumented.is_empty(),
        "paths served (OpenAPI document) that docs/API.md never shows: add a curl example \
         or a sentence naming each under its section: {undocumented:?}"
    );
}

/// Paths of the API a page names: after `$ORDINAUT`, after an HTTP method, or as inline
/// code starting with one of the API's roots.
fn documented_paths(text: &str) -> Vec<String> {
    const ROOTS: [&str; 5] = ["/v1/", "/health", "/ready", "/metrics", "/openapi.json"];
    let mut paths = Vec::new();
    for (i, _) in text.match_indices('/') {
        let rest = &text[i..];
        if !ROOTS.iter().any(|r| rest.starts_with(r)) && rest != "/v1" {
            continue;
        }
        let before = &text[..i];
        let anchored = before.ends_with("$ORDINAUT")
            || before.ends_with('`')
            || ["GET ", "POST ", "PATCH ", "PUT ", "DELETE "]
                .iter()
                .any(|m| before.ends_with(m));
        if !anchored {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/{}_-.$".contains(*c))
            .collect();
        let path = path.trim_end_matches(['.', '/']).to_owned();
        if path.len() > 1 {
            paths.push(path);
        }
    }
    paths
}

/// The template a concrete documented path is an instance of, preferring the one with
/// the most literal segments (`/v1/jobs/bulk` over `/v1/jobs/{id}`).
fn best_template<'a>(path: &str, templates: &'a [String]) -> Option<&'a str> {
    let segs: Vec<&str> = path.split('/').collect();
    templates
        .iter()
        .filter_map(|t| {
            let tsegs: Vec<&str> = t.split('/').collect();
            if tsegs.len() != segs.len() {
                return None;
            }
            let mut literal = 0;
            for (t, s) in tsegs.iter().zip(&segs) {
                if t.starts_with('{') {
                    continue;
                }
                if t != s {
                    return None;
                }
                literal += 1;
            }
            Some((literal, t.as_str()))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, t)| t)
}

/// Metric names `src/metrics.rs` registers.
fn registered_metrics() -> BTreeSet<String> {
    literals_after_quote(&read("src/metrics.rs"), "ordinaut_")
}

/// Every `"<prefix>…"` string literal (lower case, digits, `_`) in `text`.
fn literals_after_quote(text: &str, prefix: &str) -> BTreeSet<String> {
    let needle = format!("\"{prefix}");
    text.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &text[i + 1..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest[name.len()..].starts_with('"').then_some(name)
        })
        .collect()
}

/// The metric names in docs/API.md's metrics table: full names, and `_suffix` short
/// forms that stand for the row's first name with its last word replaced.
fn documented_metrics() -> BTreeSet<String> {
    let text = read("docs/API.md");
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `ordinaut_")) {
        let cell = line.split('|').nth(1).unwrap_or_default();
        // `_oldest_wait_seconds` after ordinaut_queue_available: ordinaut_queue_oldest_wait_seconds.
        let mut base = String::new();
        for token in cell.split('`').skip(1).step_by(2) {
            if token.starts_with("ordinaut_") {
                base = token.split('_').take(2).collect::<Vec<_>>().join("_");
                names.insert(token.to_owned());
            } else if let Some(short) = token.strip_prefix('_')
                && !base.is_empty()
            {
                names.insert(format!("{base}_{short}"));
            }
        }
    }
    names
}

#[test]
fn every_metric_registered_is_in_api_md_and_every_documented_one_is_registered() {
    let registered = registered_metrics();
    assert!(
        registered.contains("ordinaut_jobs_finished_total"),
        "{registered:?}"
    );
    let documented = documented_metrics();
    let missing: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "metrics src/metrics.rs registers that docs/API.md's metrics table (\"Health and \
         metrics\") lacks: add a row `| `name` | labels |` for {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/API.md's metrics table names {stale:?}, which src/metrics.rs does not register"
    );
}

//! Names callers give things (queues, kinds, schedules) and the schema name: the rule
//! written once. The API's path parameters document [`NAME_PATTERN`] itself
//! (`api::keys`); the annotations of its body and query fields must spell it as a
//! literal (utoipa's derives take no constants), and a test below checks every one of
//! them equals [`NAME_PATTERN`].

use super::Invalid;

/// Longest queue, kind or schedule name.
pub const MAX_NAME_LEN: usize = 128;

/// [`validate_name`] as a regular expression, for documents (OpenAPI, docs/API.md).
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$";

/// Checks a queue, kind or schedule name: 1-128 characters of `A-Z a-z 0-9 _ . : -`,
/// starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("must not be empty".to_owned()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(format!("{name:?} must start with a letter or digit"));
        }
        _ => {}
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "{name:?} contains {bad:?}; allowed are letters, digits, '_', '.', ':' and '-'"
        ));
    }
    Ok(())
}

/// [`validate_name`] for the field a caller named.
pub fn check_name(field: &str, name: &str) -> Result<(), Invalid> {
    validate_name(name).map_err(|r| Invalid::new(field, r))
}

/// Checks a schema name: a plain lowercase SQL identifier.
pub fn validate_schema(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 63)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_pattern() {
        assert!(validate_name("emails").is_ok());
        assert!(validate_name("scan.slither-v2:eu_1").is_ok());
        assert!(validate_name(&"a".repeat(128)).is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("é").is_err());
        assert!(validate_name(&"a".repeat(129)).is_err());
    }

    /// Every name pattern in the API's annotations is this module's rule: a copy that
    /// drifted would document one rule and enforce another.
    #[test]
    fn every_documented_name_pattern_is_the_one_rule() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("model/names.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source is readable");
                for (at, _) in text.match_indices(r#"pattern = r"^[A-Za-z0-9]["#) {
                    let literal = &text[at + r#"pattern = r""#.len()..];
                    let literal = &literal[..literal.find('"').expect("closed literal")];
                    assert_eq!(literal, NAME_PATTERN, "{}", path.display());
                    seen += 1;
                }
            }
        }
        assert!(seen > 0, "the API documents name patterns");
    }
}

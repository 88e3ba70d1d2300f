//! Placeholders in kind settings: `{{payload.a.b}}` (a dotted path into the JSON
//! payload; array items by index, `payload.targets.0`), `{{job.id}}`,
//! `{{job.attempt}}`, `{{job.queue}}`, `{{job.kind}}`.
//!
//! A template is parsed once when the configuration loads. Filling it in never
//! interprets the values: a payload string becomes exactly the characters it holds
//! (no shell, no splitting, no further placeholder expansion). A path that is missing,
//! null, an object or an array fails with an error naming the path.

use serde_json::Value;

/// The job fields placeholders can name besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct JobFields<'a> {
    /// Job id.
    pub id: &'a str,
    /// Attempt number.
    pub attempt: i32,
    /// Queue.
    pub queue: &'a str,
    /// Kind.
    pub kind: &'a str,
}

impl<'a> JobFields<'a> {
    /// The fields of `job`, whose id the caller formatted as `id`.
    pub fn of(job: &'a crate::model::ClaimedJob, id: &'a str) -> JobFields<'a> {
        JobFields {
            id,
            attempt: job.attempt,
            queue: &job.queue,
            kind: &job.kind,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Payload(Vec<String>),
    Job(JobField),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum JobField {
    Id,
    Attempt,
    Queue,
    Kind,
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; the error names the bad placeholder.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed placeholder in {text:?}"))?;
            parts.push(parse_placeholder(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// True when the template has no placeholder.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The template with every placeholder replaced by `x`, to check that the rest
    /// of it is well formed (a URL, a header value).
    pub fn sample(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                _ => "x",
            })
            .collect()
    }

    /// Fills the template in; `encode` is applied to every substituted value (not to
    /// the literal text).
    pub fn render(
        &self,
        payload: &Value,
        job: &JobFields<'_>,
        encode: &dyn Fn(&str) -> String,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Payload(path) => {
                    out.push_str(&encode(&scalar(lookup(payload, path)?, path)?))
                }
                Part::Job(field) => out.push_str(&encode(&job_value(*field, job))),
            }
        }
        Ok(out)
    }

    /// When the template is exactly one payload placeholder, the value it names (any
    /// JSON type): a body template `"{{payload.items}}"` sends the array itself.
    fn whole_value<'v>(&self, payload: &'v Value) -> Option<Result<&'v Value, String>> {
        match self.parts.as_slice() {
            [Part::Payload(path)] => Some(lookup(payload, path)),
            _ => None,
        }
    }
}

fn parse_placeholder(inner: &str) -> Result<Part, String> {
    let mut segments = inner.split('.');
    match segments.next() {
        Some("payload") => {
            let path: Vec<String> = segments.map(str::to_owned).collect();
            if path.is_empty() || path.iter().any(String::is_empty) {
                return Err(format!(
                    "{{{{{inner}}}}} names no payload field (write payload.field.sub)"
                ));
            }
            Ok(Part::Payload(path))
        }
        Some("job") => {
            let field = match (segments.next(), segments.next()) {
                (Some("id"), None) => JobField::Id,
                (Some("attempt"), None) => JobField::Attempt,
                (Some("queue"), None) => JobField::Queue,
                (Some("kind"), None) => JobField::Kind,
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{{{inner}}}}} (job.id, job.attempt, job.queue, job.kind)"
                    ));
                }
            };
            Ok(Part::Job(field))
        }
        _ => Err(format!(
            "unknown placeholder {{{{{inner}}}}} (payload.PATH, job.id, job.attempt, job.queue, job.kind)"
        )),
    }
}

fn job_value(field: JobField, job: &JobFields<'_>) -> String {
    match field {
        JobField::Id => job.id.to_owned(),
        JobField::Attempt => job.attempt.to_string(),
        JobField::Queue => job.queue.to_owned(),
        JobField::Kind => job.kind.to_owned(),
    }
}

fn lookup<'v>(payload: &'v Value, path: &[String]) -> Result<&'v Value, String> {
    let mut value = payload;
    for segment in path {
        let next = match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = next.ok_or_else(|| format!("payload.{} is missing", path.join(".")))?;
    }
    Ok(value)
}

fn scalar(value: &Value, path: &[String]) -> Result<String, String> {
    let name = path.join(".");
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(format!("payload.{name} is null")),
        Value::Array(_) => Err(format!(
            "payload.{name} is an array, not a string, number or boolean"
        )),
        Value::Object(_) => Err(format!(
            "payload.{name} is an object, not a string, number or boolean"
        )),
    }
}

/// A JSON template: every string in it is a [`Template`].
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    /// A string with placeholders.
    Text(Template),
    /// An array of templates.
    Array(Vec<JsonTemplate>),
    /// An object whose values are templates (keys are literal).
    Object(Vec<(String, JsonTemplate)>),
    /// Any other value, sent as it is.
    Literal(Value),
}

/// Parses every string of `value` as a template.
pub fn parse_json(value: &Value) -> Result<JsonTemplate, String> {
    Ok(match value {
        Value::String(s) => JsonTemplate::Text(Template::parse(s)?),
        Value::Array(items) => {
            JsonTemplate::Array(items.iter().map(parse_json).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => JsonTemplate::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), parse_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => JsonTemplate::Literal(other.clone()),
    })
}

impl JsonTemplate {
    /// Fills the template in. A string that is exactly one payload placeholder takes
    /// the value's own JSON type; other strings stay strings.
    pub fn render(&self, payload: &Value, job: &JobFields<'_>) -> Result<Value, String> {
        Ok(match self {
            JsonTemplate::Text(t) => match t.whole_value(payload) {
                Some(v) => v?.clone(),
                None => Value::String(t.render(payload, job, &|s| s.to_owned())?),
            },
            JsonTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(payload, job))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.render(payload, job)?)))
                    .collect::<Result<_, String>>()?,
            ),
            JsonTemplate::Literal(v) => v.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JOB: JobFields<'static> = JobFields {
        id: "0190-id",
        attempt: 2,
        queue: "scans",
        kind: "scan",
    };

    fn plain(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn values_are_substituted_literally() {
        let t = Template::parse("--repo={{payload.repo}}").unwrap();
        let p = json!({"repo": "x; rm -rf / $(id) {{job.id}}\nnext"});
        assert_eq!(
            t.render(&p, &JOB, &plain).unwrap(),
            "--repo=x; rm -rf / $(id) {{job.id}}\nnext"
        );
    }

    #[test]
    fn paths_go_through_objects_and_arrays() {
        let t = Template::parse(
            "{{ payload.options.depth }}/{{payload.t.1}}/{{job.attempt}}/{{job.queue}}",
        )
        .unwrap();
        let p = json!({"options": {"depth": 3}, "t": ["a", true]});
        assert_eq!(t.render(&p, &JOB, &plain).unwrap(), "3/true/2/scans");
    }

    #[test]
    fn missing_and_non_scalar_paths_are_named() {
        let t = Template::parse("{{payload.options}}").unwrap();
        let err = t
            .render(&json!({"options": {"a": 1}}), &JOB, &plain)
            .unwrap_err();
        assert_eq!(
            err,
            "payload.options is an object, not a string, number or boolean"
        );
        let t = Template::parse("{{payload.a.b}}").unwrap();
        assert_eq!(
            t.render(&json!({"a": {}}), &JOB, &plain).unwrap_err(),
            "payload.a.b is missing"
        );
    }

    #[test]
    fn bad_placeholders_are_refused_at_parse() {
        assert!(Template::parse("{{payload.}}").is_err());
        assert!(Template::parse("{{job.secret}}").is_err());
        assert!(Template::parse("{{env.HOME}}").is_err());
        assert!(Template::parse("{{payload.a").is_err());
    }

    #[test]
    fn json_templates_keep_types_of_whole_placeholders() {
        let t = parse_json(&json!({"items": "{{payload.items}}", "msg": "job {{job.id}}", "n": 1}))
            .unwrap();
        let out = t.render(&json!({"items": [1, 2]}), &JOB).unwrap();
        assert_eq!(out, json!({"items": [1, 2], "msg": "job 0190-id", "n": 1}));
    }
}

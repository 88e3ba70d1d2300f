//! Job kinds as operators declare them in `ordinaut.toml` (`[kinds.NAME]`): how each
//! runs (command, http, noop), the defaults an enqueue naming only the kind gets and
//! the payload schema enqueues are checked against. (The registry through which
//! workers tell the API and the CLI which kinds are served is `crate::kinds`.)
//!
//! Everything here is checked when the configuration loads ([`validate_kind`]), so a
//! mistake is a one-line error at start, never a failure at run time.

pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::opt_duration;
use template::Template;

/// Compiles a JSON Schema; the error says what is wrong with it.
pub fn compile_schema(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

/// How often a worker re-publishes its kinds to the registry (configuration checks the
/// registry's window against it).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(60);
/// Default grace between SIGTERM and SIGKILL for a stopped command.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
/// Exit status meaning "try again later" (sysexits.h EX_TEMPFAIL) unless a code list
/// names it.
pub const EXIT_RETRY_LATER: i32 = 75;

/// How a job kind runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum KindConfig {
    /// Send the payload (or a body template) to a URL.
    Http(HttpKind),
    /// Run a program (no shell) with the payload on stdin.
    Command(CommandKind),
    /// Built in: does nothing (after `sleep_ms` from the payload, if given). For
    /// benchmarks and smoke tests.
    Noop(NoopKind),
}

/// Defaults an enqueue of the kind gets for the fields it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindDefaults {
    /// Queue of an enqueue that names none.
    pub queue: Option<String>,
    /// Priority of an enqueue that sets none.
    pub priority: Option<i32>,
    /// max_attempts of an enqueue that sets none (before the queue's default).
    pub max_attempts: Option<i32>,
}

/// Declares a kind's configuration struct: the fields given, then the enqueue fields
/// every kind has, listed once here. (`#[serde(flatten)]` of one shared struct would
/// do the same, but serde then drops the list of expected fields from the error an
/// unknown field gets.)
macro_rules! kind_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($fields)*
            /// JSON Schema enqueues of this kind are validated against.
            #[serde(default)]
            pub payload_schema: Option<serde_json::Value>,
            /// Queue of an enqueue naming only the kind.
            #[serde(default)]
            pub queue: Option<String>,
            /// Default priority.
            #[serde(default)]
            pub priority: Option<i32>,
            /// Default max attempts.
            #[serde(default)]
            pub max_attempts: Option<i32>,
        }
    };
}

kind_config! {
    /// `type = "http"`.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HttpKind {
        /// Target URL; may hold placeholders (values percent-encoded).
        pub url: String,
        /// HTTP method; POST by default.
        #[serde(default)]
        pub method: Option<String>,
        /// Request timeout, e.g. "30s".
        #[serde(default, with = "opt_duration")]
        pub timeout: Option<Duration>,
        /// Extra request headers; values may hold placeholders.
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        /// Header name to the environment variable holding its value (read at start).
        #[serde(default)]
        pub headers_from_env: BTreeMap<String, String>,
        /// Header name to the file holding its value (read at start, trailing newline cut).
        #[serde(default)]
        pub headers_from_file: BTreeMap<String, PathBuf>,
        /// Request body template (any JSON value; placeholders in its strings). Default:
        /// the payload.
        #[serde(default)]
        pub body: Option<serde_json::Value>,
        /// Environment variable holding the HMAC-SHA256 secret for `Ordinaut-Signature`.
        #[serde(default)]
        pub signing_secret_env: Option<String>,
        /// File holding the HMAC-SHA256 secret for `Ordinaut-Signature`.
        #[serde(default)]
        pub signing_secret_file: Option<PathBuf>,
        /// What becomes the job's output: json (default), text or none.
        #[serde(default)]
        pub output: HttpOutput,
        /// Treat a 4xx response as retryable instead of a permanent failure.
        #[serde(default)]
        pub retry_on_4xx: bool,
    }
}

kind_config! {
    /// `type = "command"`.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CommandKind {
        /// Program, looked up on PATH.
        pub program: String,
        /// Arguments; each may hold placeholders and stays exactly one argument.
        #[serde(default)]
        pub args: Vec<String>,
        /// Soft limit per attempt, e.g. "600s": SIGTERM, then SIGKILL after `kill_grace`.
        #[serde(default, with = "opt_duration")]
        pub timeout: Option<Duration>,
        /// Time between SIGTERM and SIGKILL (default 10s).
        #[serde(default, with = "opt_duration")]
        pub kill_grace: Option<Duration>,
        /// Extra environment variables.
        #[serde(default)]
        pub env: BTreeMap<String, String>,
        /// Working directory.
        #[serde(default)]
        pub cwd: Option<PathBuf>,
        /// Pass the worker's whole environment (secrets included) instead of only PATH,
        /// HOME, LANG, LC_*, TZ.
        #[serde(default)]
        pub inherit_env: bool,
        /// Exit statuses that mean success (default `[0]`).
        #[serde(default)]
        pub success_codes: Option<Vec<i32>>,
        /// Exit statuses that mean a retryable failure (default: every status not listed
        /// elsewhere).
        #[serde(default)]
        pub retry_codes: Option<Vec<i32>>,
        /// Exit statuses that fail the job for good, whatever attempts remain.
        #[serde(default)]
        pub fail_codes: Option<Vec<i32>>,
        /// What becomes the job's output: none (default), stdout-json, stdout-text, file.
        #[serde(default)]
        pub output: CommandOutput,
    }
}

kind_config! {
    /// `type = "noop"`.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct NoopKind {
        /// Per-attempt timeout.
        #[serde(default, with = "opt_duration")]
        pub timeout: Option<Duration>,
    }
}

/// Where a command's result comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandOutput {
    /// No output (stdout and stderr stay in the attempt's log).
    #[default]
    None,
    /// stdout parsed as JSON; not JSON = a failed attempt.
    StdoutJson,
    /// stdout as one JSON string.
    StdoutText,
    /// The program writes JSON to `$ORDINAUT_OUTPUT_FILE`, read after it exits.
    File,
}

/// What an http kind's response becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpOutput {
    /// The body as JSON when it parses, else as a string.
    #[default]
    Json,
    /// The body as a string.
    Text,
    /// No output.
    None,
}

impl KindConfig {
    /// The configured per-attempt timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            KindConfig::Http(k) => k.timeout,
            KindConfig::Command(k) => k.timeout,
            KindConfig::Noop(k) => k.timeout,
        }
    }

    /// `http`, `command` or `noop`.
    pub fn type_name(&self) -> &'static str {
        match self {
            KindConfig::Http(_) => "http",
            KindConfig::Command(_) => "command",
            KindConfig::Noop(_) => "noop",
        }
    }

    /// The JSON Schema enqueues are checked against, if any.
    pub fn payload_schema(&self) -> Option<&serde_json::Value> {
        match self {
            KindConfig::Http(k) => k.payload_schema.as_ref(),
            KindConfig::Command(k) => k.payload_schema.as_ref(),
            KindConfig::Noop(k) => k.payload_schema.as_ref(),
        }
    }

    /// Enqueue defaults.
    pub fn defaults(&self) -> KindDefaults {
        let (queue, priority, max_attempts) = match self {
            KindConfig::Http(k) => (&k.queue, k.priority, k.max_attempts),
            KindConfig::Command(k) => (&k.queue, k.priority, k.max_attempts),
            KindConfig::Noop(k) => (&k.queue, k.priority, k.max_attempts),
        };
        KindDefaults {
            queue: queue.clone(),
            priority,
            max_attempts,
        }
    }

    /// Time a stopped attempt gets to exit before it is killed.
    pub fn kill_grace(&self) -> Option<Duration> {
        match self {
            KindConfig::Command(k) => Some(k.kill_grace.unwrap_or(DEFAULT_KILL_GRACE)),
            _ => None,
        }
    }
}

/// Checks one kind; the error is `(key, reason)` with the key under `kinds.NAME`.
pub fn validate_kind(name: &str, kind: &KindConfig) -> Result<(), (String, String)> {
    let key = format!("kinds.{name}");
    let at = |field: &str, reason: String| (format!("{key}.{field}"), reason);
    crate::model::validate_name(name).map_err(|r| (key.clone(), r))?;
    let d = kind.defaults();
    if let Some(q) = &d.queue {
        crate::model::validate_name(q).map_err(|r| at("queue", r))?;
    }
    if let Some(p) = d.priority {
        crate::model::validate_priority(p).map_err(|r| at("priority", r))?;
    }
    if d.max_attempts.is_some_and(|n| !(1..=1000).contains(&n)) {
        return Err(at("max_attempts", "must be between 1 and 1000".to_owned()));
    }
    if let Some(schema) = kind.payload_schema() {
        compile_schema(schema).map_err(|r| at("payload_schema", r))?;
    }
    match kind {
        KindConfig::Http(k) => validate_http(k, &at),
        KindConfig::Command(k) => validate_command(k, &at),
        KindConfig::Noop(_) => Ok(()),
    }
}

type At<'a> = &'a dyn Fn(&str, String) -> (String, String);

fn validate_http(k: &HttpKind, at: At<'_>) -> Result<(), (String, String)> {
    let url = Template::parse(&k.url).map_err(|r| at("url", r))?;
    // Placeholders stand in for a path segment or query value: the URL must parse
    // with them filled in by something harmless.
    let sample = url.sample();
    let parsed = reqwest::Url::parse(&sample).map_err(|e| at("url", e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(at("url", "must be an http or https URL".to_owned()));
    }
    if let Some(method) = &k.method
        && reqwest::Method::from_bytes(method.as_bytes()).is_err()
    {
        return Err(at("method", "not an HTTP method".to_owned()));
    }
    let names = k
        .headers
        .keys()
        .chain(k.headers_from_env.keys())
        .chain(k.headers_from_file.keys());
    for name in names {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(at("headers", format!("{name:?} is not a header name")));
        }
    }
    for (name, value) in &k.headers {
        let t = Template::parse(value).map_err(|r| at(&format!("headers.{name}"), r))?;
        if reqwest::header::HeaderValue::from_str(&t.sample()).is_err() {
            return Err(at(
                &format!("headers.{name}"),
                "not a valid header value".to_owned(),
            ));
        }
    }
    if let Some(body) = &k.body {
        template::parse_json(body).map_err(|r| at("body", r))?;
    }
    if k.signing_secret_env.is_some() && k.signing_secret_file.is_some() {
        return Err(at(
            "signing_secret_env",
            "set signing_secret_env or signing_secret_file, not both".to_owned(),
        ));
    }
    Ok(())
}

fn validate_command(k: &CommandKind, at: At<'_>) -> Result<(), (String, String)> {
    if k.program.is_empty() {
        return Err(at("program", "must not be empty".to_owned()));
    }
    for (i, arg) in k.args.iter().enumerate() {
        Template::parse(arg).map_err(|r| at(&format!("args[{i}]"), r))?;
        if arg.contains('\0') {
            return Err(at(&format!("args[{i}]"), "must not contain NUL".to_owned()));
        }
    }
    for (name, value) in &k.env {
        // Such a variable cannot be set: every spawn would fail.
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(at(
                "env",
                format!("{name:?} is not a variable name (empty, or has = or NUL)"),
            ));
        }
        if value.contains('\0') {
            return Err(at(
                &format!("env.{name}"),
                "must not contain NUL".to_owned(),
            ));
        }
    }
    let lists = [
        ("success_codes", &k.success_codes),
        ("retry_codes", &k.retry_codes),
        ("fail_codes", &k.fail_codes),
    ];
    let mut seen: BTreeMap<i32, &str> = BTreeMap::new();
    for (field, list) in lists {
        for &code in list.iter().flatten() {
            if !(0..=255).contains(&code) {
                return Err(at(field, format!("{code} is not an exit status (0..=255)")));
            }
            if let Some(other) = seen.insert(code, field) {
                return Err(at(field, format!("{code} is also in {other}")));
            }
        }
    }
    if k.success_codes.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(at(
            "success_codes",
            "must name at least one status".to_owned(),
        ));
    }
    if k.kill_grace.is_some_and(|g| g > Duration::from_secs(3600)) {
        return Err(at("kill_grace", "must be at most 1h".to_owned()));
    }
    Ok(())
}

/// What an exit status means for a command kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitMeaning {
    /// Done.
    Success,
    /// A failed attempt, retried while attempts remain.
    Retry,
    /// Failed for good.
    Fail,
    /// Run again later without spending an attempt (exit 75 unless listed).
    Snooze,
}

impl CommandKind {
    /// How an exit status is judged: the lists first, then 75 = snooze, then
    /// success = `[0]` by default, then retry.
    pub fn exit_meaning(&self, code: i32) -> ExitMeaning {
        let has = |list: &Option<Vec<i32>>| list.as_ref().is_some_and(|l| l.contains(&code));
        if has(&self.fail_codes) {
            ExitMeaning::Fail
        } else if has(&self.retry_codes) {
            ExitMeaning::Retry
        } else if match &self.success_codes {
            Some(list) => list.contains(&code),
            None => code == 0,
        } {
            ExitMeaning::Success
        } else if code == EXIT_RETRY_LATER {
            ExitMeaning::Snooze
        } else if self.retry_codes.is_some() {
            // An explicit retry list: what is in no list fails for good.
            ExitMeaning::Fail
        } else {
            ExitMeaning::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(
        success: Option<Vec<i32>>,
        retry: Option<Vec<i32>>,
        fail: Option<Vec<i32>>,
    ) -> CommandKind {
        CommandKind {
            program: "x".into(),
            success_codes: success,
            retry_codes: retry,
            fail_codes: fail,
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes_follow_the_lists_then_the_defaults() {
        let k = cmd(None, None, None);
        assert_eq!(k.exit_meaning(0), ExitMeaning::Success);
        assert_eq!(k.exit_meaning(1), ExitMeaning::Retry);
        assert_eq!(k.exit_meaning(75), ExitMeaning::Snooze);
        let k = cmd(Some(vec![0, 1]), None, Some(vec![2, 75]));
        assert_eq!(k.exit_meaning(1), ExitMeaning::Success);
        assert_eq!(k.exit_meaning(2), ExitMeaning::Fail);
        assert_eq!(k.exit_meaning(75), ExitMeaning::Fail);
        assert_eq!(k.exit_meaning(3), ExitMeaning::Retry);
        let k = cmd(None, Some(vec![3]), None);
        assert_eq!(k.exit_meaning(3), ExitMeaning::Retry);
        assert_eq!(k.exit_meaning(4), ExitMeaning::Fail);
        assert_eq!(k.exit_meaning(75), ExitMeaning::Snooze);
    }

    #[test]
    fn overlapping_code_lists_are_refused() {
        let k = KindConfig::Command(cmd(Some(vec![0, 1]), None, Some(vec![1])));
        let (key, reason) = validate_kind("scan", &k).unwrap_err();
        assert_eq!(key, "kinds.scan.fail_codes");
        assert!(reason.contains("also in success_codes"), "{reason}");
    }
}

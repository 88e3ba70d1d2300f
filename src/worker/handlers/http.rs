//! `http` kinds: send the payload (or the kind's `body` template) to a configured URL.
//!
//! 2xx = success (the response body, bounded, is the job's output as `output` says);
//! 429 and 503 with `Retry-After` = run again then without spending an attempt; other
//! 5xx, timeouts and connection errors = a failed attempt (retried); other 4xx =
//! failed for good unless `retry_on_4xx`. Callers never supply the URL: only
//! operators, in ordinaut.toml; placeholders fill in values (percent-encoded), never
//! the scheme or host.
//!
//! Header values may come from the worker's environment (`headers_from_env`) or a
//! file (`headers_from_file`), read once at start. With a signing secret every request
//! carries `Ordinaut-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
//!
//! Errors and logs name the URL as [`shown_url`] makes it: without user, password or
//! query values, since they are stored with the job and returned by the API.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::{Handler, HandlerFuture, JobContext, KindSpec};
use crate::kinds::template::{JobFields, JsonTemplate, Template, parse_json};
use crate::kinds::{HttpKind, HttpOutput, KindConfig};
use crate::model::{Outcome, truncate_output};

/// Default request timeout when the kind sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "Ordinaut-Signature";
/// Characters left as they are in a substituted URL value (RFC 3986 unreserved).
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The kind's settings, prepared once.
struct Prepared {
    kind: HttpKind,
    url: Template,
    method: reqwest::Method,
    headers: Vec<(HeaderName, Template)>,
    /// Headers from the environment and files: fixed values, never logged.
    secret_headers: HeaderMap,
    body: Option<JsonTemplate>,
    signing_key: Option<ring::hmac::Key>,
}

/// Sends jobs to a URL.
pub struct HttpHandler {
    prepared: Arc<Prepared>,
    client: OnceLock<reqwest::Client>,
}

impl HttpHandler {
    /// Handler for the `http` kind `name`: reads its headers and signing secret from
    /// the environment and files; the error names the key that cannot be read.
    pub fn new(name: &str, kind: HttpKind) -> Result<HttpHandler, (String, String)> {
        let key = |field: &str| format!("kinds.{name}.{field}");
        let url = Template::parse(&kind.url).map_err(|r| (key("url"), r))?;
        let method = match &kind.method {
            Some(m) => reqwest::Method::from_bytes(m.as_bytes())
                .map_err(|_| (key("method"), "not an HTTP method".to_owned()))?,
            None => reqwest::Method::POST,
        };
        let mut headers = Vec::new();
        for (n, v) in &kind.headers {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| (key("headers"), format!("{n:?} is not a header name")))?;
            let t = Template::parse(v).map_err(|r| (key(&format!("headers.{n}")), r))?;
            headers.push((name, t));
        }
        let mut secret_headers = HeaderMap::new();
        let mut secret = |field: &str, n: &str, value: String| {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| (key(field), format!("{n:?} is not a header name")))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                (
                    key(&format!("{field}.{n}")),
                    "the value is not a valid header value".to_owned(),
                )
            })?;
            value.set_sensitive(true);
            secret_headers.insert(name, value);
            Ok::<(), (String, String)>(())
        };
        for (n, var) in &kind.headers_from_env {
            let value = std::env::var(var).map_err(|_| {
                (
                    key(&format!("headers_from_env.{n}")),
                    format!("environment variable {var} is not set"),
                )
            })?;
            secret("headers_from_env", n, value)?;
        }
        for (n, path) in &kind.headers_from_file {
            let value =
                read_secret(path).map_err(|r| (key(&format!("headers_from_file.{n}")), r))?;
            secret("headers_from_file", n, value)?;
        }
        let body = kind
            .body
            .as_ref()
            .map(parse_json)
            .transpose()
            .map_err(|r| (key("body"), r))?;
        let signing = match (&kind.signing_secret_env, &kind.signing_secret_file) {
            (Some(var), _) => Some(std::env::var(var).map_err(|_| {
                (
                    key("signing_secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?),
            (None, Some(path)) => {
                Some(read_secret(path).map_err(|r| (key("signing_secret_file"), r))?)
            }
            (None, None) => None,
        };
        if signing.as_ref().is_some_and(|s| s.is_empty()) {
            return Err((key("signing_secret_env"), "the secret is empty".to_owned()));
        }
        let signing_key =
            signing.map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes()));
        Ok(HttpHandler {
            prepared: Arc::new(Prepared {
                kind,
                url,
                method,
                headers,
                secret_headers,
                body,
                signing_key,
            }),
            client: OnceLock::new(),
        })
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("ordinaut/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        })
    }
}

/// A secret file's text without its trailing newline.
fn read_secret(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

impl Handler for HttpHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let client = self.client().clone();
        let prepared = self.prepared.clone();
        Box::pin(async move { send(client, &prepared, ctx).await })
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.prepared.kind.timeout.unwrap_or(DEFAULT_TIMEOUT))
    }

    fn describe(&self) -> KindSpec {
        let mut spec = KindSpec::of(&KindConfig::Http(self.prepared.kind.clone()));
        spec.timeout = self.timeout();
        spec
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(key: &ring::hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

async fn send(client: reqwest::Client, p: &Prepared, ctx: JobContext) -> Outcome {
    let job = &ctx.job;
    let id = job.id.to_string();
    let fields = JobFields {
        id: &id,
        attempt: job.attempt,
        queue: &job.queue,
        kind: &job.kind,
    };
    let not_sent = |reason: String| Outcome::Failed {
        error: format!("not sent: {reason}"),
        log: None,
    };
    let url = match p.url.render(&job.payload, &fields, &|v| {
        utf8_percent_encode(v, URL_VALUE).to_string()
    }) {
        Ok(u) => u,
        Err(r) => return not_sent(r),
    };
    let mut header_map = HeaderMap::new();
    for (name, template) in &p.headers {
        let value = match template.render(&job.payload, &fields, &|v| v.to_owned()) {
            Ok(v) => v,
            Err(r) => return not_sent(r),
        };
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                header_map.insert(name.clone(), v);
            }
            // A newline from the payload must not split the header.
            Err(_) => {
                return not_sent(format!(
                    "header {name} would hold characters a header cannot (CR, LF, ...)"
                ));
            }
        }
    }
    header_map.extend(p.secret_headers.clone());
    let body = match &p.body {
        Some(t) => match t.render(&job.payload, &fields) {
            Ok(b) => b,
            Err(r) => return not_sent(r),
        },
        None => job.payload.clone(),
    };
    let body = body.to_string().into_bytes();
    if let Some(key) = &p.signing_key {
        let sig = signature(key, chrono::Utc::now().timestamp(), &body);
        if let Ok(v) = HeaderValue::from_str(&sig) {
            header_map.insert(SIGNATURE_HEADER, v);
        }
    }
    if !header_map.contains_key(CONTENT_TYPE) {
        header_map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let mut request = client
        .request(p.method.clone(), &url)
        .headers(header_map)
        .header("Ordinaut-Job-Id", id.as_str())
        .header("Ordinaut-Attempt", job.attempt.to_string())
        .header("Ordinaut-Queue", job.queue.as_str())
        .header("Ordinaut-Kind", job.kind.as_str())
        .body(body);
    // The API refuses a request id no header can carry; one enqueued by SQL or the CLI
    // is left out rather than failing every attempt.
    if let Some(request_id) = job
        .metadata
        .get("request_id")
        .and_then(|v| v.as_str())
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        request = request.header("X-Request-Id", request_id);
    }
    let response = tokio::select! {
        r = request.send() => r,
        _ = ctx.stop.cancelled() => return Outcome::Failed { error: "stopped".to_owned(), log: None },
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                error: format!("request to {} failed: {}", shown_url(&url), chain(e)),
                log: None,
            };
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v.trim()));
    let body = tokio::select! {
        b = read_body(response, ctx.output_limit) => b,
        _ = ctx.stop.cancelled() => return Outcome::Failed { error: "stopped".to_owned(), log: None },
    };
    let log = Some(format!("HTTP {status}\n{body}"));
    if status.is_success() {
        let output = match p.kind.output {
            HttpOutput::Json => {
                Some(serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
            }
            HttpOutput::Text => Some(serde_json::Value::String(body)),
            HttpOutput::None => None,
        };
        return Outcome::Succeeded { output, log };
    }
    let code = status.as_u16();
    if let (Some(after), 429 | 503) = (retry_after, code) {
        return Outcome::Snoozed {
            after,
            reason: format!("HTTP {status} with Retry-After"),
            log,
        };
    }
    let error = format!("{} answered HTTP {status}", shown_url(&url));
    if status.is_client_error() && !p.kind.retry_on_4xx && code != 429 {
        Outcome::Failed { error, log }
    } else {
        Outcome::Retry { error, log }
    }
}

/// `url` as errors show it: user and password removed, query values replaced by `***`
/// (tokens often travel there).
pub fn shown_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return "<unparseable URL>".to_owned();
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "***")));
    }
    u.to_string()
}

/// A request error with its causes, without the URL reqwest adds (the caller names
/// the URL itself, redacted).
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Retry-After is either delay-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(
        delta
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(86_400)),
    )
}

async fn read_body(mut response: reqwest::Response, limit: usize) -> String {
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Ok(Some(chunk)) = response.chunk().await {
        total += chunk.len();
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let mut text = truncate_output(&String::from_utf8_lossy(&kept), limit);
    if total > kept.len() {
        text.push_str(&format!(
            "\n[... {} more bytes not kept]",
            total - kept.len()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Reference value: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
        let sig = signature(&key, 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn shown_url_drops_credentials_and_query_values() {
        assert_eq!(
            shown_url("https://bot:s3cret@hooks.example.com:8443/p?token=abc&x=1"),
            "https://hooks.example.com:8443/p?token=***&x=***"
        );
        assert_eq!(shown_url("http://h/p"), "http://h/p");
    }
}

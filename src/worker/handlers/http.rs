//! `http` kinds: send the payload to a configured URL.
//!
//! 2xx = success (the response body, bounded, is the job's output); 429 and 503 with
//! `Retry-After` = run again then without spending an attempt; other 5xx, timeouts and
//! connection errors = a failed attempt (retried); other 4xx = failed for good unless
//! `retry_on_4xx`. Callers never supply the URL: only operators, in ordinaut.toml.
//!
//! Errors and logs name the URL as [`shown_url`] makes it: without user, password or
//! query values, since they are stored with the job and returned by the API.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::{Handler, HandlerFuture, JobContext};
use crate::config::KindConfig;
use crate::model::{Outcome, truncate_output};

/// Default request timeout when the kind sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends jobs to a URL.
pub struct HttpHandler {
    config: KindConfig,
    client: OnceLock<reqwest::Client>,
}

impl HttpHandler {
    /// Handler for an `http` kind config.
    pub fn new(config: KindConfig) -> HttpHandler {
        HttpHandler {
            config,
            client: OnceLock::new(),
        }
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

impl Handler for HttpHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let client = self.client().clone();
        let config = self.config.clone();
        Box::pin(async move { send(client, config, ctx).await })
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.config.timeout().unwrap_or(DEFAULT_TIMEOUT))
    }
}

async fn send(client: reqwest::Client, config: KindConfig, ctx: JobContext) -> Outcome {
    let KindConfig::Http {
        url,
        method,
        headers,
        retry_on_4xx,
        ..
    } = config
    else {
        return Outcome::Failed {
            error: "internal: http handler given a non-http kind".to_owned(),
            log: None,
        };
    };
    let job = &ctx.job;
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut header_map = HeaderMap::new();
    for (name, value) in &headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            header_map.insert(n, v);
        }
    }
    let mut request = client
        .request(method, &url)
        .headers(header_map)
        .header("Ordinaut-Job-Id", job.id.to_string())
        .header("Ordinaut-Attempt", job.attempt.to_string())
        .header("Ordinaut-Queue", job.queue.as_str())
        .header("Ordinaut-Kind", job.kind.as_str())
        .json(&job.payload);
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
    // W3C trace context; parsed and normalised, so always a valid header value.
    if let Some(trace) = &ctx.trace {
        request = request.header("traceparent", trace.traceparent.as_str());
        if let Some(state) = trace
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            request = request.header("tracestate", state);
        }
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
        let output = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        return Outcome::Succeeded {
            output: Some(output),
            log,
        };
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
    if status.is_client_error() && !retry_on_4xx && code != 429 {
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
    fn shown_url_drops_credentials_and_query_values() {
        assert_eq!(
            shown_url("https://bot:s3cret@hooks.example.com:8443/p?token=abc&x=1"),
            "https://hooks.example.com:8443/p?token=***&x=***"
        );
        assert_eq!(shown_url("http://h/p"), "http://h/p");
    }
}

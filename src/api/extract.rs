//! Extractors and middleware with our error shape: a `Json` body, `Path` and `Query`
//! whose rejections become [`ApiError`]s, bearer-token auth, and the request id.
//!
//! Nothing here touches the database.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use subtle::ConstantTimeEq;

use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult};

/// A JSON body. Malformed or mistyped JSON is answered with our error shape (400),
/// an oversized body with 413 and a missing content type with 415.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(
            "request body is larger than the configured limit".into(),
        );
    }
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::BadRequest {
            code: "invalid_field",
            message: strip(
                &text,
                "Failed to deserialize the JSON body into the target type: ",
            ),
        },
        JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest {
            code: "malformed_json",
            message: format!(
                "body is not valid JSON: {}",
                strip(&text, "Failed to parse the request body as JSON: ")
            ),
        },
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        _ => ApiError::BadRequest {
            code: "invalid_body",
            message: text,
        },
    }
}

fn strip(text: &str, prefix: &str) -> String {
    text.strip_prefix(prefix).unwrap_or(text).to_owned()
}

/// Path parameters with our error shape.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::BadRequest {
                code: "invalid_path",
                message: e.body_text(),
            }),
            Err(other) => Err(ApiError::Internal(other.body_text())),
        }
    }
}

/// Query parameters with our error shape.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::BadRequest {
                code: "invalid_query",
                message: strip(&e.body_text(), "Failed to deserialize query string: "),
            }),
            Err(other) => Err(ApiError::BadRequest {
                code: "invalid_query",
                message: other.body_text(),
            }),
        }
    }
}

/// Parses a job id given in a path.
pub fn parse_id(field: &str, text: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::BadRequest {
        code: "invalid_path",
        message: format!("{field}: {text:?} is not a UUID"),
    })
}

/// What a caller may do, from its bearer token or its dashboard session. Handlers of
/// state-changing routes never see a read-only caller: the middleware refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token configured: everyone may do everything (warned at start).
    Open,
    /// One of `API_TOKENS`, numbered from 1 in the configured order.
    Admin(usize),
    /// One of `API_READONLY_TOKENS`, numbered from 1: reads only.
    ReadOnly(usize),
}

impl Access {
    /// True when this caller may change things.
    pub fn can_write(&self) -> bool {
        !matches!(self, Access::ReadOnly(_))
    }

    /// Who, for the audit log: names the token by its position, never its text.
    pub fn actor(&self) -> String {
        match self {
            Access::Open => "anonymous (no API_TOKENS)".to_owned(),
            Access::Admin(n) => format!("API_TOKENS #{n}"),
            Access::ReadOnly(n) => format!("API_READONLY_TOKENS #{n}"),
        }
    }
}

/// Middleware: requires `Authorization: Bearer <token>` matching a configured token.
/// A read-only token may use GET and HEAD only (403 otherwise). With no tokens
/// configured every request passes (documented; warned at start). The caller's
/// [`Access`] is stored in the request's extensions.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.access(request.headers()) {
        Some(access) if access.can_write() || is_read(request.method()) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Some(_) => ApiError::Forbidden("this token is read-only: it cannot change anything".into())
            .into_response(),
        None => ApiError::Unauthorized.into_response(),
    }
}

/// GET and HEAD change nothing.
pub fn is_read(method: &axum::http::Method) -> bool {
    method == axum::http::Method::GET || method == axum::http::Method::HEAD
}

/// The access a request's bearer token gives, None when it gives none.
pub(crate) fn bearer_access(settings: &super::ApiSettings, headers: &HeaderMap) -> Option<Access> {
    if settings.auth_disabled() {
        return Some(Access::Open);
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())?;
    token_access(settings, given)
}

/// The access `given` gives. Compares in constant time against every configured token,
/// so the answer's timing says nothing about which token, or how much of one, matched.
pub(crate) fn token_access(settings: &super::ApiSettings, given: &str) -> Option<Access> {
    let find = |tokens: &[String]| {
        let mut found = 0usize;
        for (i, token) in tokens.iter().enumerate() {
            let hit: bool = token.as_bytes().ct_eq(given.as_bytes()).into();
            // No early exit: every token is compared whatever matched.
            found |= usize::from(hit) * (i + 1);
        }
        found
    };
    let admin = find(&settings.tokens);
    let readonly = find(&settings.readonly_tokens);
    match (admin, readonly) {
        (0, 0) => None,
        (0, n) => Some(Access::ReadOnly(n)),
        (n, _) => Some(Access::Admin(n)),
    }
}

/// The request id of the current request (`X-Request-Id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Header carrying the request id both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Middleware: takes the caller's `X-Request-Id` when it is a sane token (1-128 of
/// `A-Za-z0-9._:-`), else makes a UUIDv7; stores it in the request's extensions and
/// echoes it on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| Uuid::now_v7().to_string());
    let header_value = HeaderValue::from_str(&id).ok();
    if let Some(v) = &header_value {
        request.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
    }
    request.extensions_mut().insert(RequestId(id));
    let mut response = next.run(request).await;
    if let Some(v) = header_value {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Durations as the API accepts them: exactly the documented pattern
/// (`model::parse_wire_duration`). `positive` also refuses zero.
pub fn parse_duration(field: &str, text: &str, positive: bool) -> ApiResult<Duration> {
    let zero = if positive {
        crate::model::Zero::Refused
    } else {
        crate::model::Zero::Allowed
    };
    Ok(crate::model::parse_wire_duration(field, text, zero)?)
}

/// A number field inside `range`; 400 naming the field and the range otherwise.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> ApiResult<T> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(ApiError::invalid(
        field,
        format!(
            "{value} is out of range {}..={}",
            range.start(),
            range.end()
        ),
    ))
}

/// A count or id field that must be 1 or more; 400 naming the field otherwise.
pub fn check_at_least_one<T: PartialOrd + From<u8> + std::fmt::Display>(
    field: &str,
    value: T,
) -> ApiResult<T> {
    if value >= T::from(1) {
        return Ok(value);
    }
    Err(ApiError::invalid(
        field,
        format!("{value} must be at least 1"),
    ))
}

/// Integer fields that also take `3.0`: JSON Schema's `integer` admits a number with a
/// zero fraction, and the OpenAPI document promises what JSON Schema means.
pub mod int {
    use serde::{Deserialize, Deserializer, de::Error};

    fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
            return Ok(None);
        };
        if let Some(i) = n.as_i64() {
            return Ok(Some(i));
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(D::Error::custom(format!("{n} is not an integer in range"))),
        }
    }

    /// An optional i32.
    pub fn opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
        whole(d)?
            .map(|v| i32::try_from(v).map_err(|_| D::Error::custom(format!("{v} is out of range"))))
            .transpose()
    }

    /// An optional u32.
    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        whole(d)?
            .map(|v| u32::try_from(v).map_err(|_| D::Error::custom(format!("{v} is out of range"))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_below_one_are_refused_naming_the_field() {
        assert_eq!(check_at_least_one("burst", 1).ok(), Some(1));
        let refused = check_at_least_one("before", -3i64).map_err(|e| e.to_string());
        assert_eq!(refused, Err("before: -3 must be at least 1".to_owned()));
    }

    #[test]
    fn durations_follow_the_documented_pattern() {
        assert_eq!(
            parse_duration("d", "30s", true).ok(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("d", "1.5", true).ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_duration("d", "2m", true).ok(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("d", "250ms", true).ok(),
            Some(Duration::from_millis(250))
        );
        assert!(parse_duration("d", "0", false).is_ok());
        for bad in [
            "0", "0.000s", "", "s", "1h30m", "-1s", "1.2345s", "1e3", "1234567", " 1s", "1d",
        ] {
            assert!(
                parse_duration("d", bad, true).is_err(),
                "{bad:?} must be refused"
            );
        }
    }
}

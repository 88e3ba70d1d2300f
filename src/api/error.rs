//! The API's error type and its one JSON shape: `{"error":{"code","message"}}`.
//!
//! Caller mistakes become 4xx with a stable `code` and a message naming the field;
//! they are logged at debug at most. Our own failures become a 500 with a generic
//! message, and the full error is logged once, here, inside the request's span.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db;

/// The error body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`, `unauthorized`.
    #[schema(example = "invalid_field")]
    pub code: String,
    /// Human-readable message naming the field and the problem.
    #[schema(example = "queue: must not be empty")]
    pub message: String,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is invalid (400).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Message naming the field.
        message: String,
    },
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The caller is known but may not do this, e.g. a read-only token writing (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such job, queue or route (404).
    #[error("{0}")]
    NotFound(String),
    /// Method not allowed on this route (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The resource is not in a state that allows this (409).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// Body over the configured limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Body is not `application/json` (415).
    #[error("expected a request with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The service cannot answer now (503).
    #[error("{0}")]
    Unavailable(String),
    /// Our fault (500); the message is never shown to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::model::Invalid> for ApiError {
    fn from(e: crate::model::Invalid) -> ApiError {
        ApiError::invalid(e.field, e.reason)
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A 400 `invalid_field` naming `field`.
    pub fn invalid(field: impl std::fmt::Display, reason: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest {
            code: "invalid_field",
            message: format!("{field}: {reason}"),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<db::Error> for ApiError {
    fn from(e: db::Error) -> ApiError {
        match e {
            db::Error::NotFound { what, id } => {
                ApiError::NotFound(format!("{what} {id} not found"))
            }
            db::Error::Conflict(message) => ApiError::Conflict {
                code: "conflict",
                message,
            },
            db::Error::Invalid { field, reason } => ApiError::invalid(field, reason),
            // No primary right now (failover, restart): retry later, not a server bug.
            e if e.is_unavailable() => ApiError::Unavailable(format!("database unavailable: {e}")),
            // SQLSTATE class 22 (data exception): Postgres refused a value the caller
            // sent, e.g. a number beyond numeric's range inside a payload.
            db::Error::Sqlx(sqlx::Error::Database(e))
                if e.code().is_some_and(|c| c.starts_with("22")) =>
            {
                ApiError::BadRequest {
                    code: "invalid_value",
                    message: format!("a value was refused by the database: {}", e.message()),
                }
            }
            other => ApiError::Internal(format!("{other:#}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                // Logged once, here, in the request span (method, route, request id).
                tracing::error!(error = %detail, "request failed");
                "internal error; see the server log".to_owned()
            }
            other => {
                tracing::debug!(status = status.as_u16(), error = %other, "request refused");
                other.to_string()
            }
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

//! The one place where failures become HTTP responses.
//!
//! Every error body is `{"error": CODE, "detail": MESSAGE}` with a stable code; the detail
//! comes from the error's `Display`, which is shared code, so both stores word it the same.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::request::BadRequest;
use crate::response::json;
use crate::store::StoreError;

/// A request the service could not carry out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("account {0} does not exist")]
    NoSuchAccountPath(String),
    #[error("the request path is not valid percent-encoded UTF-8")]
    UndecodablePath,
    #[error("request body could not be read: {0}")]
    UnreadableBody(String),
    #[error("request body is larger than the limit")]
    BodyTooLarge,
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the operation was interrupted")]
    Interrupted,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) | Self::UndecodablePath | Self::UnreadableBody(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::NoSuchAccountPath(_) | Self::NoRoute { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Interrupted => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::Store(e) => match e {
                StoreError::AccountNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                StoreError::InsufficientFunds { .. } => {
                    (StatusCode::CONFLICT, "insufficient_funds")
                }
                StoreError::BalanceTooLarge { .. } => (StatusCode::CONFLICT, "balance_too_large"),
                StoreError::BalanceNotZero { .. } => (StatusCode::CONFLICT, "balance_not_zero"),
                StoreError::InvalidSnapshot(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                // Only reachable after importing a snapshot whose next_id is near the end of
                // the id range; SQLite would fail there on its own too.
                StoreError::IdsExhausted | StoreError::Storage(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            // Internals stay in the log: a replica's disk error is not the client's business,
            // and it would make the body differ between implementations for no use.
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        json(
            status,
            &ErrorBody {
                error: code,
                detail,
            },
        )
    }
}

//! The one place where failures become HTTP responses.
//!
//! Every error body is `{"error": CODE, "detail": MESSAGE}` with a stable code; the detail
//! comes from the error's `Display`, which is shared code, so both stores word it the same.
//! With random ids, an error about one account names it in a field of its own instead,
//! `{"error": CODE, "detail": MESSAGE, "account": ID}`, and the detail leaves the id out: a
//! gateway translating minted ids between copies translates whole JSON strings, not words
//! inside a sentence, and two copies must word the same refusal the same.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ids::{IdSpace, PublicId};
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
    /// A path segment, or a string in a body, that names no account.
    #[error("account {0} does not exist")]
    NoSuchAccount(String),
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
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<PublicId>,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) | Self::UndecodablePath | Self::UnreadableBody(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::NoSuchAccount(_) | Self::NoRoute { .. } => (StatusCode::NOT_FOUND, "not_found"),
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

impl ApiError {
    /// With random ids, the account the error is about and what it says of it, in words that
    /// leave the id out.
    fn about_account(&self, ids: &IdSpace) -> Option<(PublicId, String)> {
        Some(match self {
            Self::NoSuchAccount(text) => (
                PublicId::Text(text.clone()),
                "the account does not exist".to_owned(),
            ),
            Self::BadRequest(BadRequest::SelfTransfer(id)) => (
                id.clone(),
                "from and to must be different accounts".to_owned(),
            ),
            Self::Store(StoreError::AccountNotFound(id)) => {
                (ids.public(*id), "the account does not exist".to_owned())
            }
            Self::Store(StoreError::InsufficientFunds {
                id,
                balance,
                amount,
            }) => (
                ids.public(*id),
                format!("the account has balance {balance}, which does not cover {amount}"),
            ),
            Self::Store(StoreError::BalanceTooLarge { id }) => (
                ids.public(*id),
                "the account would exceed the largest representable balance".to_owned(),
            ),
            Self::Store(StoreError::BalanceNotZero { id, balance }) => (
                ids.public(*id),
                format!("the account still has balance {balance}; withdraw it before closing"),
            ),
            _ => return None,
        })
    }

    /// The answer to this error from a bank whose ids are in the space `ids`.
    pub(crate) fn respond(self, ids: &IdSpace) -> Response {
        let (status, code) = self.status_and_code();
        let (detail, account) = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            // Internals stay in the log: a replica's disk error is not the client's business,
            // and it would make the body differ between implementations for no use.
            ("internal error".to_owned(), None)
        } else if ids.is_random()
            && let Some((account, detail)) = self.about_account(ids)
        {
            (detail, Some(account))
        } else {
            (self.to_string(), None)
        };
        json(
            status,
            &ErrorBody {
                error: code,
                detail,
                account,
            },
        )
    }
}

/// For errors that name no account (no route, a bad body...): the same in every id space.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(&IdSpace::Sequential)
    }
}

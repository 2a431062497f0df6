//! Every error the gateway answers itself, mapped to one HTTP response: a status, a short JSON
//! body `{"error": "...", "detail": "..."}`, and `Retry-After` where a retry can succeed.

use lockstep_backends::ReplicationError;
use serde::Serialize;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error(
        "the request head (request line and headers) is {size} bytes, over the limit of {limit} bytes (gateway.max_header_size)"
    )]
    HeaderTooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("{path} is not a gateway endpoint")]
    UnknownGatewayPath { path: String },
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("this route requires the {header} header on state-changing requests")]
    IdempotencyKeyRequired { header: String },
    #[error(transparent)]
    InvalidIdempotencyKey(#[from] crate::idempotency::KeyError),
    #[error("this {header} was already used for a different request (method, path or body differ)")]
    IdempotencyKeyReused { header: String },
    #[error("a request with the same {header} key is still being processed; retry later")]
    IdempotencyKeyInFlight { header: String },
    #[error("the gateway is handling its limit of {limit} state-changing requests; retry shortly")]
    Overloaded { limit: usize },
    #[error(
        "the request sent earlier with this {header} (request {seq}) failed with an unknown outcome: the primary may have applied it and no backup could take over; it is not run again automatically (an operator can check the primary with `lockstep status` and rejoin it)"
    )]
    IdempotencyOutcomeUnknown { header: String, seq: u64 },
    #[error("no backend is reachable: {0}")]
    Unavailable(String),
    #[error("the backend failed: {0}")]
    BadGateway(String),
    #[error(transparent)]
    Transaction(lockstep_backends::TxnError),
    #[error(
        "{0}: Lockstep-Transaction is `ID` or `ID; commit`, the ID 1 to 128 characters of letters, digits, '-', '_', '.', '~'"
    )]
    BadTransactionHeader(String),
}

impl From<lockstep_backends::TxnError> for GatewayError {
    fn from(e: lockstep_backends::TxnError) -> Self {
        match e {
            lockstep_backends::TxnError::Replication(r) => GatewayError::Replication(r),
            lockstep_backends::TxnError::Journal(j) => {
                GatewayError::Replication(ReplicationError::Journal(j))
            }
            other => GatewayError::Transaction(other),
        }
    }
}

/// A response the gateway writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u16,
    pub retry_after: Option<u32>,
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    detail: String,
}

impl GatewayError {
    fn code(&self) -> (u16, &'static str) {
        match self {
            GatewayError::BodyTooLarge { .. } => (413, "body_too_large"),
            GatewayError::HeaderTooLarge { .. } => (431, "header_too_large"),
            GatewayError::BadRequest(_) => (400, "bad_request"),
            GatewayError::UnknownGatewayPath { .. } => (404, "not_found"),
            GatewayError::IdempotencyKeyRequired { .. } => (400, "idempotency_key_required"),
            GatewayError::InvalidIdempotencyKey(_) => (400, "invalid_idempotency_key"),
            GatewayError::IdempotencyKeyReused { .. } => (422, "idempotency_key_reused"),
            GatewayError::IdempotencyKeyInFlight { .. } => (409, "idempotency_key_in_flight"),
            GatewayError::Replication(ReplicationError::PrimaryUnreachable { .. }) => {
                (503, "primary_unreachable")
            }
            GatewayError::Replication(ReplicationError::PrimaryFailed {
                timed_out: true, ..
            }) => (504, "primary_timeout"),
            GatewayError::Replication(ReplicationError::PrimaryFailed { .. }) => {
                (502, "primary_failed")
            }
            GatewayError::Replication(ReplicationError::Journal(_)) => (503, "journal_unavailable"),
            GatewayError::Replication(ReplicationError::TaskFailed) => (500, "internal"),
            GatewayError::Unavailable(_) => (503, "unavailable"),
            GatewayError::IdempotencyOutcomeUnknown { .. } => (409, "idempotency_outcome_unknown"),
            GatewayError::Overloaded { .. } => (503, "overloaded"),
            GatewayError::BadGateway(_) => (502, "bad_gateway"),
            GatewayError::BadTransactionHeader(_) => (400, "bad_transaction"),
            GatewayError::Transaction(t) => {
                use lockstep_backends::TxnError as T;
                match t {
                    T::Unknown(_) => (404, "unknown_transaction"),
                    T::Aborted { .. } => (409, "transaction_aborted"),
                    T::Committed { .. } => (409, "transaction_committed"),
                    T::ModeMismatch { .. } => (409, "transaction_mode"),
                    T::NoBackup => (409, "transaction_needs_backup"),
                    T::NotAbortable { .. } => (409, "transaction_not_abortable"),
                    T::Replication(_) | T::Journal(_) => (503, "unavailable"),
                }
            }
        }
    }

    pub fn response(&self) -> ErrorResponse {
        let (status, error) = self.code();
        let body = serde_json::to_vec(&Body {
            error,
            detail: self.to_string(),
        })
        .expect("plain strings serialize");
        ErrorResponse {
            status,
            retry_after: (status == 503).then_some(RETRY_AFTER_SECS),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_primary_is_503_with_retry_after_and_json() {
        let e = GatewayError::from(ReplicationError::PrimaryUnreachable {
            primary: "a".into(),
            reason: "connection refused".into(),
        });
        let r = e.response();
        assert_eq!((r.status, r.retry_after), (503, Some(1)));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "primary_unreachable");
        assert!(v["detail"].as_str().unwrap().contains("connection refused"));
    }

    #[test]
    fn statuses_follow_the_fault() {
        assert_eq!(
            GatewayError::BodyTooLarge { limit: 10 }.response().status,
            413
        );
        assert_eq!(GatewayError::BadRequest("x".into()).response().status, 400);
        let timeout = ReplicationError::PrimaryFailed {
            primary: "a".into(),
            seq: 1,
            reason: "t".into(),
            timed_out: true,
        };
        assert_eq!(GatewayError::from(timeout).response().status, 504);
    }
}

//! The HTTP client seam: how the pipeline sends a request to one backend and gets its whole
//! response. The gateway implements it; tests implement it with recording mocks.

use std::time::Duration;

use async_trait::async_trait;
use lockstep_journal::{Header, RequestRecord, ResponseRecord};

use crate::Backend;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request never reached the backend (connection refused, DNS, connect timeout): it was
    /// certainly not processed.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The request may have been processed, but no complete response came back in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The request may have been processed; the exchange failed midway.
    #[error("exchange failed: {0}")]
    Exchange(String),
    /// The backend answered with a refusal status (`[replication] refusals`): it did not process
    /// the request. Never returned by a transport; the pipeline turns refusals into this.
    #[error("refused with status {0}")]
    Refused(u16),
}

impl TransportError {
    /// Whether the backend certainly did not process the request.
    pub fn not_delivered(&self) -> bool {
        matches!(
            self,
            TransportError::Connect(_) | TransportError::Refused(_)
        )
    }
}

#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request` plus `extra` headers to `backend`; the whole response, or an error, within
    /// `timeout`.
    async fn send(
        &self,
        backend: &Backend,
        request: &RequestRecord,
        extra: &[Header],
        timeout: Duration,
    ) -> Result<ResponseRecord, TransportError>;
}

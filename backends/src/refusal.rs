//! Refusals: answers that say "not processed" (`429`, `503`, `408` by default). The primary's
//! refusal ends a request without replicating it; a backup's refusal, or a connection it did not
//! accept, is retried in lane order with backoff until `backup_timeout`, never judged as a
//! divergence.

use std::time::{Duration, Instant};

use lockstep_journal::{RequestRecord, ResponseRecord, Seq};
use tracing::debug;

use crate::transport::TransportError;
use crate::{Backend, Replicator};

/// First wait between two attempts; doubled after each, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Whether `status` is one of `refusals`.
pub(crate) fn is_refusal(refusals: &[u16], status: u16) -> bool {
    refusals.contains(&status)
}

/// The wait a refusal asks for with `Retry-After` (delay in seconds; an HTTP date is not
/// honoured, the backoff applies).
pub(crate) fn retry_after(response: &ResponseRecord) -> Option<Duration> {
    let value = response.header("retry-after")?;
    let seconds: u64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

impl Replicator {
    /// Sends `request` to the backup `backend` as [`Replicator::dispatch`] does (`journaled`),
    /// or straight through the transport (a fresh catch-up), and retries while it refuses or
    /// does not accept the connection, waiting with backoff (or its `Retry-After`) until
    /// `backup_timeout` has passed since the first attempt. Then the last refusal comes back as
    /// [`TransportError::Refused`], or the connection error as it was.
    pub(crate) async fn send_to_backup(
        &self,
        backend: &Backend,
        seq: Seq,
        request: &RequestRecord,
        extra: &[lockstep_journal::Header],
        refusals: &[u16],
        journaled: bool,
    ) -> Result<ResponseRecord, TransportError> {
        let budget = self.config().backup_timeout;
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        let result = loop {
            attempts += 1;
            let left = budget.saturating_sub(started.elapsed());
            let timeout = if left.is_zero() { budget } else { left };
            let sent = if journaled {
                self.dispatch(backend, seq, request, extra, timeout).await
            } else {
                self.send_translated(backend, request, extra, timeout).await
            };
            let (why, asked) = match &sent {
                Ok(r) if is_refusal(refusals, r.status) => {
                    metrics::counter!("lockstep_refusals_total", "backend" => backend.name.clone(), "role" => "backup")
                        .increment(1);
                    if journaled {
                        // It did not process it: not an unknown outcome.
                        let _ = self.journal().record_undelivered(seq, &backend.name).await;
                    }
                    (TransportError::Refused(r.status), retry_after(r))
                }
                Err(e) if e.not_delivered() => (e.clone(), None),
                _ => break sent,
            };
            let wait = asked.unwrap_or(backoff).max(backoff);
            if started.elapsed() + wait >= budget {
                break Err(why);
            }
            let what = format!("request {seq}: {why} (attempt {attempts}), retrying");
            debug!(backend = %backend.name, seq, attempts, error = %why, "backup did not take the request; retrying");
            if backend.retrying().is_none() {
                metrics::counter!("lockstep_backup_retries_total", "backend" => backend.name.clone())
                    .increment(1);
            }
            backend.set_retrying(Some(what));
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let still_member = self
                .pool()
                .get(&backend.name)
                .is_some_and(|b| std::ptr::eq(&*b, backend));
            if !still_member {
                break Err(why);
            }
        };
        backend.set_retrying(None);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use lockstep_journal::Header;

    fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> ResponseRecord {
        ResponseRecord {
            status,
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn retry_after_in_seconds_is_honoured_and_a_date_is_not() {
        assert_eq!(
            retry_after(&answer(503, &[("Retry-After", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&answer(
                503,
                &[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]
            )),
            None
        );
        assert_eq!(retry_after(&answer(503, &[])), None);
    }

    #[test]
    fn only_listed_statuses_are_refusals() {
        let refusals = [429, 503];
        assert!(is_refusal(&refusals, 503));
        assert!(!is_refusal(&refusals, 500));
        assert!(!is_refusal(&[], 503));
    }
}

//! Topology events on the wire: Server-Sent Events frames, and the optional webhook.

use std::time::Duration;

use bytes::Bytes;
use lockstep_backends::{PoolStatus, TopologyEvent};
use tokio::sync::broadcast;
use tracing::warn;

/// One SSE frame for an event: `event:` is the kind, `id:` the epoch, `data:` the JSON.
pub(crate) fn event_frame(event: &TopologyEvent) -> Bytes {
    let data = serde_json::to_string(event).expect("events serialize");
    Bytes::from(format!(
        "event: {}\nid: {}\ndata: {data}\n\n",
        event.event, event.epoch
    ))
}

/// The first frame of every stream: the topology as it is now.
pub(crate) fn status_frame(status: &PoolStatus) -> Bytes {
    let data = serde_json::to_string(status).expect("status serializes");
    Bytes::from(format!(
        "event: status\nid: {}\ndata: {data}\n\n",
        status.epoch
    ))
}

/// The frames of one event stream: the current status first, then every event, with a comment
/// every 15 s so that idle connections stay open through intermediaries.
pub(crate) struct EventFrames {
    events: broadcast::Receiver<TopologyEvent>,
    heartbeat: tokio::time::Interval,
    first: Option<Bytes>,
}

impl EventFrames {
    /// Subscribes now, so that no event after `status` is missed.
    pub(crate) fn new(replicator: &lockstep_backends::Replicator) -> Self {
        let events = replicator.events().subscribe();
        EventFrames {
            events,
            // The first comment 15 s after the status, not with it.
            heartbeat: tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(15),
                Duration::from_secs(15),
            ),
            first: Some(status_frame(&replicator.status())),
        }
    }

    /// The next frame to send; `None` when the stream is over.
    pub(crate) async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        tokio::select! {
            e = self.events.recv() => match e {
                Ok(event) => Some(event_frame(&event)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(Bytes::from(format!(": {n} events dropped\n\n"))),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = self.heartbeat.tick() => Some(Bytes::from_static(b": keep-alive\n\n")),
        }
    }
}

/// The response header of an event stream.
pub(crate) fn stream_header(primary: Option<&str>) -> Option<pingora::http::ResponseHeader> {
    let mut header = pingora::http::ResponseHeader::build(200, Some(5)).ok()?;
    header
        .insert_header("Content-Type", "text/event-stream")
        .ok()?;
    header.insert_header("Cache-Control", "no-cache").ok()?;
    header.insert_header("Transfer-Encoding", "chunked").ok()?;
    if let Some(primary) = primary {
        header
            .insert_header("Lockstep-Primary", primary.to_owned())
            .ok()?;
    }
    Some(header)
}

/// Posts every event to `url`, retrying with backoff; runs until the bus closes. It reads from
/// its own subscription, so a slow or dead webhook never holds up requests (it may miss events
/// if it falls more than the bus's capacity behind; it logs how many).
pub(crate) async fn run_webhook(
    mut events: broadcast::Receiver<TopologyEvent>,
    url: url::Url,
    timeout: Duration,
    retries: u32,
) {
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the webhook client; webhook disabled");
            return;
        }
    };
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "the webhook fell behind; events were not delivered"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let mut backoff = Duration::from_millis(100);
        for attempt in 0..=retries {
            match client.post(url.clone()).json(&event).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => {
                    warn!(status = %r.status(), attempt, event = event.event, "webhook refused an event")
                }
                Err(e) => {
                    warn!(error = %e, attempt, event = event.event, "webhook delivery failed")
                }
            }
            if attempt < retries {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_sse_format() {
        let e = TopologyEvent {
            event: "primary-changed",
            backend: Some("b".into()),
            implementation: Some("v1".into()),
            primary: "b".into(),
            epoch: 3,
            detail: "a failed".into(),
            time: "2026-01-01T00:00:00.000Z".into(),
        };
        let f = String::from_utf8(event_frame(&e).to_vec()).unwrap();
        assert!(
            f.starts_with("event: primary-changed\nid: 3\ndata: {"),
            "{f}"
        );
        assert!(f.ends_with("}\n\n"));
        assert_eq!(
            f.matches('\n').count(),
            4,
            "one line per field, data on one line"
        );
    }
}

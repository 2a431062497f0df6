//! Topology events: what operators and clients are told when roles or states change.

use serde::Serialize;
use tokio::sync::broadcast;

/// One change of the topology, as streamed on the events endpoints and posted to webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologyEvent {
    /// `primary-changed`, `backend-in-sync`, `backend-ejected`, `backend-diverged`,
    /// `backend-down`, `backend-suspect`, `backend-joining`, `failover-started`,
    /// `failover-failed`, `backend-added`, `backend-removed`.
    pub event: &'static str,
    /// The backend concerned, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// That backend's implementation label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<String>,
    /// The primary after the change.
    pub primary: String,
    /// The topology epoch after the change.
    pub epoch: u64,
    /// Why, in words.
    pub detail: String,
    /// RFC 3339, gateway clock.
    pub time: String,
}

/// A bounded fan-out of events; slow subscribers lose the oldest ones (they can re-read
/// `/status`), they never slow the gateway down.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<TopologyEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: TopologyEvent) {
        // No subscriber is fine.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<TopologyEvent> {
        self.tx.subscribe()
    }
}

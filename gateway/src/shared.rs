//! What every service of one gateway shares: the validated config, the classifier and the
//! replication pipeline.

use std::sync::Arc;

use lockstep_backends::Replicator;
use lockstep_classifiers::Classifier;
use lockstep_config::Config;

use crate::idempotency::InFlight;
use crate::transport::PeerTimeouts;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) classifier: Classifier,
    pub(crate) replicator: Arc<Replicator>,
    /// Timeouts of proxied reads.
    pub(crate) read_timeouts: PeerTimeouts,
    /// The read path's peer per backend URL.
    pub(crate) read_peers: dashmap::DashMap<String, pingora::upstreams::peer::HttpPeer>,
    /// Scoped idempotency keys with a request in flight.
    pub(crate) in_flight: Arc<InFlight>,
    /// Logical requests being handled now (bounded by `gateway.max_in_flight`).
    pub(crate) logical_in_flight: std::sync::atomic::AtomicUsize,
    /// Requests being handled now on either listener (event streams excepted): a stopping
    /// gateway exits as soon as this is zero instead of waiting for its whole grace period.
    pub(crate) active_requests: Arc<std::sync::atomic::AtomicUsize>,
    /// The admin bearer token, when one is configured.
    pub(crate) admin_token: Option<String>,
    /// The process is stopping or handing over: answers close their connection.
    pub(crate) closing: std::sync::atomic::AtomicBool,
    /// Where checkpoints are stored, when `[checkpoint]` hooks are configured.
    pub(crate) checkpoints: Option<crate::checkpoints::CheckpointStore>,
    /// Catch-ups, running or last finished, by backend name.
    pub(crate) joins: parking_lot::Mutex<
        std::collections::HashMap<
            String,
            tokio::sync::watch::Receiver<lockstep_backends::JoinProgress>,
        >,
    >,
}

/// One request being handled, counted in [`Shared::active_requests`] until dropped.
#[derive(Debug)]
pub(crate) struct ActiveRequest(Arc<std::sync::atomic::AtomicUsize>);

impl ActiveRequest {
    pub(crate) fn new(shared: &Shared) -> Self {
        shared
            .active_requests
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        ActiveRequest(shared.active_requests.clone())
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

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
    /// Scoped idempotency keys with a request in flight.
    pub(crate) in_flight: Arc<InFlight>,
}

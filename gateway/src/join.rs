//! Bringing a backend back: `rejoin` replays what it missed (or, with `reset`, empties it
//! through its reset hook and replays everything), then verifies its view.

use lockstep_backends::{
    BackendState, CatchupOptions, JoinError, JoinProgress, JoinReport, run_hook,
};
use lockstep_config::CompareRule;
use lockstep_journal::RequestRecord;
use tokio::sync::watch;

use crate::shared::Shared;

pub(crate) async fn rejoin(
    shared: &Shared,
    name: &str,
    reset: bool,
    progress: &watch::Sender<JoinProgress>,
) -> Result<JoinReport, JoinError> {
    let r = &shared.replicator;
    let backend = r
        .pool()
        .get(name)
        .ok_or_else(|| JoinError::UnknownBackend(name.to_owned()))?;
    // Checked before any reset: a reset hook must never run against the primary or a healthy copy.
    if r.pool().primary().name == name {
        return Err(JoinError::IsPrimary(name.to_owned()));
    }
    if backend.state() == BackendState::InSync {
        return Err(JoinError::AlreadyInSync(name.to_owned()));
    }
    if backend.state() == BackendState::Diverged && !reset {
        return Err(JoinError::Reset(format!(
            "{name} diverged: its state cannot be trusted, so replaying on top of it would not help; rejoin it with --reset"
        )));
    }
    let from = if reset {
        let (index, config) = shared
            .config
            .backends
            .iter()
            .enumerate()
            .find(|(_, b)| b.name == name)
            .ok_or_else(|| JoinError::UnknownBackend(name.to_owned()))?;
        let hook = config.reset.as_ref().ok_or_else(|| {
            JoinError::Reset(format!(
                "{name} has no reset hook; set backends[{index}].reset = {{ command = \"...\" }} or {{ request = \"POST /path\" }}"
            ))
        })?;
        let timeout = shared
            .config
            .replication
            .backup_timeout
            .max(std::time::Duration::from_secs(30));
        run_hook(hook, &backend, r.transport().as_ref(), timeout)
            .await
            .map_err(|e| JoinError::Reset(format!("the reset hook of {name} failed: {e}")))?;
        1
    } else {
        backend.acked_seq() + 1
    };
    let classifier = &shared.classifier;
    let compare = |request: &RequestRecord| -> CompareRule {
        let class = classifier.classify(&request.method, &request.uri, &http::HeaderMap::new());
        classifier.compare_rule(&class).clone()
    };
    let options = CatchupOptions {
        fence_lag: shared.config.catchup.fence_lag,
        batch: shared.config.catchup.batch,
        fresh: reset,
    };
    r.catch_up(
        name,
        from,
        &shared.config.verify.probes,
        &compare,
        &options,
        progress,
    )
    .await
}

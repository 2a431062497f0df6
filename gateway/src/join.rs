//! Bringing a backend in: `add` registers a new, empty one and fills it from the journal (or from
//! a checkpoint); `rejoin` replays what a known one missed (or, with `reset`, starts it over from
//! a checkpoint or from an empty state). Both end with a fence and a view check.

use lockstep_backends::{
    Backend, BackendState, CatchupOptions, Checkpoint, CheckpointError, JoinError, JoinProgress,
    JoinReport, import_state, run_hook,
};
use std::collections::BTreeSet;

use lockstep_config::CompareRule;
use lockstep_journal::{RequestRecord, Seq};
use serde::Deserialize;
use tokio::sync::watch;

use crate::checkpoints::CheckpointInfo;
use crate::shared::Shared;

/// `POST /backends`: the backend to add.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddRequest {
    pub(crate) name: String,
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) implementation: String,
    /// Start from the latest checkpoint: `true` requires one, `false` replays the whole
    /// journal, absent uses one when there is one.
    #[serde(default)]
    pub(crate) checkpoint: Option<bool>,
}

/// Adds a new backend and fills it. On failure the backend stays listed (diverged or lagging)
/// for the operator to inspect and remove; the rest of the deployment is untouched.
pub(crate) async fn add(
    shared: &Shared,
    request: &AddRequest,
    progress: &watch::Sender<JoinProgress>,
) -> Result<JoinReport, AddError> {
    let start = choose_start(shared, request.checkpoint, true)?;
    let r = &shared.replicator;
    let backend = r
        .add_backend(&request.name, &request.url, &request.implementation)
        .await?;
    match &start {
        Some(checkpoint) => {
            // Importing the checkpoint again is a reset: a second attempt is possible.
            let reset = || async {
                seed(shared, &backend, checkpoint).await?;
                Ok(checkpoint.seq + 1)
            };
            fresh_catch_up(shared, &backend.name, reset, progress).await
        }
        None => Ok(catch_up(shared, &backend.name, 1, true, Vec::new(), progress).await?),
    }
}

pub(crate) async fn rejoin(
    shared: &Shared,
    name: &str,
    reset: bool,
    progress: &watch::Sender<JoinProgress>,
) -> Result<JoinReport, AddError> {
    let r = &shared.replicator;
    let backend = r
        .pool()
        .get(name)
        .ok_or_else(|| JoinError::UnknownBackend(name.to_owned()))?;
    // Checked before any reset: a reset hook must never run against the primary or a healthy copy.
    if r.pool().primary().name == name {
        return Err(JoinError::IsPrimary(name.to_owned()).into());
    }
    if backend.state() == BackendState::InSync {
        return Err(JoinError::AlreadyInSync(name.to_owned()).into());
    }
    if backend.state() == BackendState::Diverged && !reset {
        return Err(JoinError::Reset(format!(
            "{name} diverged: its state cannot be trusted, so replaying on top of it would not help; rejoin it with --reset"
        ))
        .into());
    }
    if !reset {
        let from = backend.acked_seq() + 1;
        return Ok(catch_up(shared, name, from, false, Vec::new(), progress).await?);
    }
    // A checkpoint replaces the whole state: no reset needed, and only its tail is replayed.
    if let Some(checkpoint) = choose_start(shared, None, false)? {
        let reset = || async {
            seed(shared, &backend, &checkpoint).await?;
            Ok(checkpoint.seq + 1)
        };
        return fresh_catch_up(shared, name, reset, progress).await;
    }
    let (index, config) = shared
        .config
        .backends
        .iter()
        .enumerate()
        .find(|(_, b)| b.name == name)
        .ok_or_else(|| {
            JoinError::Reset(format!(
                "{name} was added at run time and has no reset hook; remove it and add it again (empty), or configure [checkpoint] hooks"
            ))
        })?;
    let hook = config.reset.as_ref().ok_or_else(|| {
        JoinError::Reset(format!(
            "{name} has no reset hook; set backends[{index}].reset = {{ command = \"...\" }} or {{ request = \"POST /path\" }}, or configure [checkpoint] hooks"
        ))
    })?;
    let timeout = shared
        .config
        .replication
        .backup_timeout
        .max(std::time::Duration::from_secs(30));
    let reset = || async {
        run_hook(hook, &backend, r.transport().as_ref(), timeout)
            .await
            .map_err(|e| JoinError::Reset(format!("the reset hook of {name} failed: {e}")))?;
        Ok(1)
    };
    fresh_catch_up(shared, name, reset, progress).await
}

/// Rejoins `name` from where it stopped, in the background, as `lockstep backend rejoin NAME`
/// would (its progress in `/status` `joins`); for `[health] auto_rejoin`.
pub(crate) fn rejoin_in_background(shared: &std::sync::Weak<Shared>, name: String) {
    let Some(shared) = shared.upgrade() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let (progress, watching) = watch::channel(JoinProgress::default());
        shared.joins.lock().insert(name.clone(), watching);
        match rejoin(&shared, &name, false, &progress).await {
            Ok(report) => tracing::info!(
                backend = %name,
                replayed = report.replayed,
                pause_ms = report.pause_ms,
                "automatic rejoin finished: in-sync"
            ),
            Err(e) => tracing::warn!(backend = %name, error = %e, "automatic rejoin failed"),
        }
    });
}

/// Resets the backend (`reset` returns the first seq to replay), replays the journal into it
/// and admits it. When that replay diverges after skipping aborted requests the primary may
/// have applied ([`JoinError::doubtful`]: requests whose outcome could not be settled when they
/// failed, because no backup could take over), the backend is reset again and replayed with a
/// better guess of which of them the primary applied: if it did, only a replay that includes
/// them can reproduce its state. A divergence at request `t` points at the doubtful requests of
/// `t`'s lane since the last committed request of that lane (that one matched, so the decisions
/// before it were probably right), or, when there are none, at every doubtful request of the
/// lane before `t`: their inclusion is flipped. A view difference with no such pointer includes
/// every doubtful request not tried yet. The view check decides, as always; the
/// attempts end when a guess does not change or after a few.
async fn fresh_catch_up<F, Fut>(
    shared: &Shared,
    name: &str,
    reset: F,
    progress: &watch::Sender<JoinProgress>,
) -> Result<JoinReport, AddError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Seq, AddError>>,
{
    let mut include: BTreeSet<Seq> = BTreeSet::new();
    let mut doubtful: BTreeSet<Seq> = BTreeSet::new();
    let mut attempts = 0usize;
    loop {
        let from = reset().await?;
        let result = catch_up(
            shared,
            name,
            from,
            true,
            include.iter().copied().collect(),
            progress,
        )
        .await;
        let e = match result {
            Ok(report) => return Ok(report),
            Err(e) => e,
        };
        doubtful.extend(e.doubtful());
        attempts += 1;
        if doubtful.is_empty() || attempts > doubtful.len().min(MAX_DOUBT_ATTEMPTS) {
            return Err(e.into());
        }
        let Some(next) = next_guess(shared, &e, &include, &doubtful).await else {
            return Err(e.into());
        };
        tracing::warn!(
            backend = name,
            ?doubtful,
            replayed_with = ?next,
            error = %e,
            "the replay diverged and the primary may have applied aborted requests; resetting again to replay with another guess"
        );
        include = next;
    }
}

/// At most this many replays after the first, whatever the number of doubtful requests.
const MAX_DOUBT_ATTEMPTS: usize = 8;

/// The next set of doubtful requests to replay (see [`fresh_catch_up`]); `None` when there is
/// no better guess.
async fn next_guess(
    shared: &Shared,
    error: &JoinError,
    include: &BTreeSet<Seq>,
    doubtful: &BTreeSet<Seq>,
) -> Option<BTreeSet<Seq>> {
    let next: BTreeSet<Seq> = match error {
        JoinError::Diverged { seq, .. } => {
            let first = *doubtful.first()?;
            if first >= *seq {
                return None;
            }
            let journal = shared.replicator.journal();
            let entries = journal
                .read_from(first, (*seq - first + 1) as usize)
                .await
                .ok()?;
            let lane = &entries.iter().find(|e| e.seq == *seq)?.lane;
            let last_matched = entries
                .iter()
                .filter(|e| {
                    &e.lane == lane
                        && e.seq < *seq
                        && matches!(e.state, lockstep_journal::EntryState::Committed(_))
                })
                .map(|e| e.seq)
                .max()
                .unwrap_or(0);
            let on_lane = |after: Seq| -> BTreeSet<Seq> {
                entries
                    .iter()
                    .filter(|e| {
                        &e.lane == lane
                            && e.seq > after
                            && e.seq < *seq
                            && doubtful.contains(&e.seq)
                    })
                    .map(|e| e.seq)
                    .collect()
            };
            // A lane can hold more than one piece of state (an account per request path, one
            // lane for all): a matching answer then vouches only for its own part, and the
            // culprit may lie further back in the lane.
            let mut culprits = on_lane(last_matched);
            if culprits.is_empty() {
                culprits = on_lane(0);
            }
            include.symmetric_difference(&culprits).copied().collect()
        }
        _ => include.union(doubtful).copied().collect(),
    };
    (next != *include).then_some(next)
}

/// Takes a checkpoint now and stores it (then compacts the journal, when configured).
pub(crate) async fn checkpoint(shared: &Shared) -> Result<(CheckpointInfo, u64), AddError> {
    let config = &shared.config.checkpoint;
    let (Some(export), Some(store)) = (&config.export, &shared.checkpoints) else {
        return Err(CheckpointError::NotConfigured.into());
    };
    let (checkpoint, pause) = shared
        .replicator
        .take_checkpoint(export, config.timeout)
        .await?;
    let info = store
        .save(&checkpoint, config.keep)
        .map_err(|e| AddError::Store(e.to_string()))?;
    if config.compact {
        // The acknowledged seqs a restart trusts for the history before the compaction point.
        if let Err(e) = shared.replicator.persist_topology_now().await {
            tracing::warn!(error = %e, "could not persist the topology; the journal is not compacted");
            return Ok((info, pause.as_millis() as u64));
        }
        if let Some(oldest) = store
            .list()
            .map_err(|e| AddError::Store(e.to_string()))?
            .first()
        {
            match shared.replicator.journal().compact(oldest.seq).await {
                Ok(c) => tracing::info!(
                    through = oldest.seq,
                    first_seq = c.first_seq,
                    dropped_entries = c.dropped_entries,
                    dropped_bytes = c.dropped_bytes,
                    "journal compacted"
                ),
                Err(e) => tracing::warn!(error = %e, "the journal could not be compacted"),
            }
        }
    }
    Ok((info, pause.as_millis() as u64))
}

/// The checkpoint a join starts from: `want` true requires one, false refuses one, `None` uses
/// the latest when checkpoints are configured. `fresh_join`: the backend is new, so history the
/// journal no longer holds can only come from a checkpoint.
fn choose_start(
    shared: &Shared,
    want: Option<bool>,
    fresh_join: bool,
) -> Result<Option<Checkpoint>, AddError> {
    let configured = shared.config.checkpoint.import.is_some();
    let first = shared.replicator.journal().first_seq();
    let store = match (&shared.checkpoints, configured) {
        (Some(store), true) => store,
        _ if want == Some(true) => return Err(CheckpointError::NotConfigured.into()),
        _ => return Ok(None),
    };
    if want == Some(false) {
        if fresh_join && first > 1 {
            return Err(JoinError::HistoryCompacted {
                backend: "a new backend".into(),
                needed: 1,
                first,
            }
            .into());
        }
        return Ok(None);
    }
    match store.latest().map_err(|e| AddError::Store(e.to_string()))? {
        Some(info) => Ok(Some(
            store
                .load(&info)
                .map_err(|e| AddError::Store(e.to_string()))?,
        )),
        None if want == Some(true) => Err(AddError::Store(
            "there is no checkpoint yet; take one with `lockstep checkpoint`".into(),
        )),
        None => Ok(None),
    }
}

async fn seed(shared: &Shared, backend: &Backend, checkpoint: &Checkpoint) -> Result<(), AddError> {
    let hook = shared
        .config
        .checkpoint
        .import
        .as_ref()
        .ok_or(CheckpointError::NotConfigured)?;
    import_state(
        hook,
        backend,
        shared.replicator.transport().as_ref(),
        shared.config.checkpoint.timeout,
        checkpoint,
    )
    .await
    .map_err(|reason| {
        shared.replicator.change_state(
            backend,
            None,
            BackendState::Lagging,
            &format!("the checkpoint import failed: {reason}"),
        );
        AddError::from(CheckpointError::Import {
            backend: backend.name.clone(),
            reason,
        })
    })?;
    // It now holds the source's ids.
    shared
        .replicator
        .adopt_ids(backend, &checkpoint.ids)
        .await
        .map_err(|e| {
            AddError::from(CheckpointError::Import {
                backend: backend.name.clone(),
                reason: format!("its minted identifiers could not be journaled: {e}"),
            })
        })?;
    Ok(())
}

async fn catch_up(
    shared: &Shared,
    name: &str,
    from: Seq,
    fresh: bool,
    include_aborted: Vec<Seq>,
    progress: &watch::Sender<JoinProgress>,
) -> Result<JoinReport, JoinError> {
    let classifier = &shared.classifier;
    let compare = |request: &RequestRecord| -> CompareRule {
        let class = classifier.classify(&request.method, &request.uri, &http::HeaderMap::new());
        classifier.compare_rule(&class).clone()
    };
    let options = CatchupOptions {
        fence_lag: shared.config.catchup.fence_lag,
        batch: shared.config.catchup.batch,
        concurrency: shared.config.catchup.concurrency,
        fresh,
        include_aborted,
    };
    shared
        .replicator
        .catch_up(
            name,
            from,
            &shared.config.verify.probes,
            &compare,
            &options,
            progress,
        )
        .await
}

/// Why an add, a rejoin or a checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddError {
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Membership(#[from] lockstep_backends::MembershipError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the checkpoint store failed: {0}")]
    Store(String),
}

//! Topology changes that move the primary role: automatic failover and controlled switchover.
//!
//! Both follow the same shape: take the topology-change lock, fence admission (new requests
//! wait), drain what is in flight, change roles, resume. Failover also finishes the requests
//! that were parked when the old primary failed under them, in seq order, on the new primary.

use std::time::{Duration, Instant};

use bytes::Bytes;
use lockstep_config::ViewProbe;

use super::*;
use crate::probes::compare_views;

/// Why a controlled switchover was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverError {
    #[error("there is no backend named {0}")]
    UnknownBackend(String),
    #[error("{0} is already the primary")]
    AlreadyPrimary(String),
    #[error("{name} is {state}; only an in-sync backup can be promoted")]
    NotInSync { name: String, state: BackendState },
}

impl Replicator {
    /// The primary failed (under a live request, or its health checks): requests waiting on it
    /// give up at once and a failover runs in the background. Many reports of one loss lead to
    /// one failover.
    pub fn declare_primary_lost(&self, primary: &Backend, reason: &str) {
        self.primary_lost.send_modify(|g| *g += 1);
        let me = self.self_arc();
        let (lost, reason) = (primary.name.clone(), reason.to_owned());
        tokio::spawn(async move { me.fail_over(&lost, &reason).await });
    }

    /// Replaces the primary `lost` (if it still is the primary) by the in-sync backup with the
    /// highest acknowledged seq (ties: config order), then finishes every parked request on it.
    pub async fn fail_over(self: &Arc<Self>, lost: &str, reason: &str) {
        let _one_change = self.topology_change.lock().await;
        let started = Instant::now();
        self.fence_all();
        if self.pool.primary().name == lost {
            // Their tentative requests die with the primary; the drain would wait for them.
            self.abort_for_failover(&format!("the primary {lost} failed: {reason}"))
                .await;
        }
        self.drain().await;
        let mut lost = lost.to_owned();
        let mut reason = reason.to_owned();
        loop {
            let current = self.pool.primary();
            let mut parked = std::mem::take(&mut *self.parked.lock());
            parked.sort_by_key(|p| p.seq);
            if current.name != lost && parked.is_empty() {
                break;
            }
            if current.name == lost {
                let Some(successor) = self.await_proven_successor().await else {
                    self.topology_changed(
                        "failover-failed",
                        Some(&lost),
                        "no in-sync backup can take over",
                    );
                    for p in parked {
                        let (seq, error) = (p.seq, p.reason.clone());
                        let _ = p.reply.send(Err(self
                            .abort(&current, &[], &p.processed, seq, error)
                            .await));
                    }
                    break;
                };
                self.topology_changed("failover-started", Some(&lost), &reason);
                self.change_state(
                    &current,
                    None,
                    BackendState::Suspect,
                    &format!("failed as primary: {reason}"),
                );
                crate::failpoint!("during-promotion");
                self.pool.set_primary(successor.clone());
                self.topology_changed(
                    "primary-changed",
                    Some(&successor.name),
                    &format!("{lost} failed ({reason}); {} promoted", successor.name),
                );
            }
            let primary = self.pool.primary();
            match self.finish_parked(&primary, parked).await {
                Ok(()) => break,
                Err((rest, why)) => {
                    // The new primary failed too: its share goes back, and it is replaced.
                    self.parked.lock().extend(rest);
                    lost = primary.name.clone();
                    reason = why;
                }
            }
        }
        self.unfence();
        Replicator::record_pause("failover", started.elapsed());
        info!(pause_ms = started.elapsed().as_millis() as u64, primary = %self.pool.primary().name, "failover finished");
    }

    /// The in-sync backup with the highest acknowledged seq; config order breaks ties.
    pub(crate) fn choose_successor(&self) -> Option<Arc<Backend>> {
        let mut best: Option<Arc<Backend>> = None;
        for b in self.pool.backups() {
            if b.state() != BackendState::InSync {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|cur| b.acked_seq() > cur.acked_seq())
            {
                best = Some(b);
            }
        }
        best
    }

    /// [`Self::choose_proven_successor`], tried again while in-sync backups exist but none
    /// passes its checks, for up to `primary_timeout` with admission still fenced: a copy that
    /// is briefly unreachable is worth waiting for, since giving up leaves the lost primary in
    /// place, and that primary may have restarted empty.
    async fn await_proven_successor(&self) -> Option<Arc<Backend>> {
        let deadline = tokio::time::Instant::now() + self.config.primary_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(successor) = self.choose_proven_successor().await {
                return Some(successor);
            }
            if !self.has_successor() || tokio::time::Instant::now() + pause > deadline {
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The successor. Each in-sync backup is first confirmed ([`Self::confirm_candidate`]): it
    /// answers, and it is still the instance that was proven. When view probes are configured
    /// and several confirmed backups could take over, their views are compared, and a candidate
    /// whose view differs from the others' is marked `diverged` rather than promoted. The largest
    /// group of equal views wins; on a tie, the group holding the candidate in-sync by proof for
    /// the longest (the one that has seen the most of the committed history directly) wins.
    /// Within the group, the highest acknowledged seq (then config order) is promoted.
    pub(crate) async fn choose_proven_successor(&self) -> Option<Arc<Backend>> {
        let probes = self.probes();
        let mut candidates: Vec<Arc<Backend>> = Vec::new();
        for backup in self.pool.backups() {
            if backup.state() == BackendState::InSync
                && self.confirm_candidate(&backup, &probes).await
            {
                candidates.push(backup);
            }
        }
        // Best first: highest acknowledged seq, then config order (the sort is stable).
        candidates.sort_by_key(|b| std::cmp::Reverse(b.acked_seq()));
        if probes.is_empty() || candidates.len() < 2 {
            return candidates.into_iter().next();
        }
        let timeout = self.config.backup_timeout;
        let transport = self.transport.as_ref();
        // Groups of candidates with equal views; each group keyed by its first member.
        let mut groups: Vec<Vec<Arc<Backend>>> = Vec::new();
        for candidate in candidates {
            let mut placed = false;
            for group in groups.iter_mut() {
                match compare_views(transport, &group[0], &candidate, &probes, timeout).await {
                    Ok(d) if d.is_empty() => {
                        group.push(candidate.clone());
                        placed = true;
                        break;
                    }
                    Ok(_) => {}
                    Err((who, error)) => {
                        warn!(candidate = %candidate.name, %who, %error, "a promotion candidate did not answer its probes");
                        placed = true;
                        if who == group[0].name {
                            // The group's reference failed, not the candidate: start over with it.
                            group.remove(0);
                            group.insert(0, candidate.clone());
                        }
                        break;
                    }
                }
            }
            if !placed {
                groups.push(vec![candidate]);
            }
        }
        groups.retain(|g| !g.is_empty());
        if groups.len() <= 1 {
            return groups.into_iter().next().and_then(|g| g.into_iter().next());
        }
        let proven = |g: &Vec<Arc<Backend>>| g.iter().map(|b| b.proven_since()).min().unwrap_or(0);
        groups.sort_by(|a, b| b.len().cmp(&a.len()).then(proven(a).cmp(&proven(b))));
        let winner = groups.remove(0);
        let chosen = winner[0].clone();
        for loser in groups.into_iter().flatten() {
            self.change_state(
                &loser,
                Some(BackendState::InSync),
                BackendState::Diverged,
                &format!(
                    "at promotion its view differed from {}'s, which {}: rebuild it with lockstep backend rejoin {} --reset",
                    chosen.name,
                    if winner.len() > 1 {
                        "more in-sync copies share"
                    } else {
                        "has been in-sync by proof for longer"
                    },
                    loser.name
                ),
            );
        }
        Some(chosen)
    }

    /// Whether `candidate` may be promoted. Its state was proven while it stayed the same
    /// instance and kept answering; a failover must not take that on trust, since the copy may
    /// have restarted empty or from an old snapshot faster than its health checks noticed, or
    /// died since. With `[health] identity_header` its health check is asked which instance it
    /// is: one that restarted is made `suspect` and proven again against the new primary once
    /// the failover is over. With view probes, it must answer them. A candidate that does not
    /// answer is left to its health checks.
    async fn confirm_candidate(&self, candidate: &Arc<Backend>, probes: &[ViewProbe]) -> bool {
        if let Some(check) = self.identity_check() {
            let request = RequestRecord {
                method: "GET".into(),
                uri: check.path.clone(),
                headers: vec![Header::new("User-Agent", "lockstep-health")],
                body: Bytes::new(),
            };
            let answer = self
                .transport
                .send(candidate, &request, &[], check.timeout)
                .await;
            let answer = match answer {
                Ok(r) if (200..300).contains(&r.status) => r,
                Ok(r) => {
                    warn!(candidate = %candidate.name, status = r.status, "a promotion candidate failed its health check");
                    return false;
                }
                Err(error) => {
                    warn!(candidate = %candidate.name, %error, "a promotion candidate did not answer its health check");
                    return false;
                }
            };
            let identity = answer
                .header(&check.header)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            if let Some(identity) = identity
                && let Some(previous) = candidate.observe_identity(&identity)
            {
                let why = format!(
                    "restarted (its instance identity changed from {previous} to {identity}), \
                     seen when it was about to be promoted"
                );
                warn!(candidate = %candidate.name, %previous, %identity, "a promotion candidate restarted");
                if self.change_state(
                    candidate,
                    Some(BackendState::InSync),
                    BackendState::Suspect,
                    &why,
                ) {
                    // Waits for the failover (the topology lock), then compares it with the
                    // new primary.
                    let (me, backend) = (self.self_arc(), candidate.clone());
                    tokio::spawn(
                        async move { me.readmit(&backend, BackendState::Suspect, &why).await },
                    );
                }
                return false;
            }
        }
        for probe in probes {
            let answer = crate::probes::send_probe(
                self.transport.as_ref(),
                candidate,
                probe,
                self.config.backup_timeout,
            )
            .await;
            if let Err(error) = answer {
                warn!(candidate = %candidate.name, %error, "a promotion candidate did not answer its probes");
                return false;
            }
        }
        true
    }

    /// Runs parked requests, in seq order, on `primary` and the in-sync backups; answers their
    /// clients. If `primary` fails, returns the requests not yet finished and why.
    async fn finish_parked(
        &self,
        primary: &Arc<Backend>,
        parked: Vec<Parked>,
    ) -> Result<(), (Vec<Parked>, String)> {
        let mut queue = parked.into_iter();
        while let Some(p) = queue.next() {
            let earlier = p.processed.lock().remove(&primary.name);
            let response = match earlier {
                Some(r) => r,
                None => match self
                    .dispatch(
                        primary,
                        p.seq,
                        &p.request,
                        &p.extra,
                        self.config.primary_timeout,
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        let mut rest = vec![p];
                        rest.extend(queue);
                        return Err((rest, e.to_string()));
                    }
                },
            };
            // The new primary answers in its own ids; its client gets the canonical ones.
            let response = self
                .primary_to_canonical(primary, p.seq, &p.compare, response)
                .await;
            if crate::refusal::is_refusal(&p.compare.refusals, response.status) {
                let outcome = self
                    .refuse(primary, &self.pool.backups(), &p.processed, p.seq, response)
                    .await;
                let _ = p.reply.send(outcome);
                continue;
            }
            if let Err(e) = self.record_primary_answer(primary, p.seq, &response).await {
                warn!(seq = p.seq, error = %e, "journal could not record the primary's answer");
            }
            for backup in self.pool.backups() {
                if backup.state() != BackendState::InSync {
                    continue;
                }
                let earlier = p.processed.lock().remove(&backup.name);
                let answer = match earlier {
                    Some(r) => Ok(r),
                    None => {
                        self.dispatch(
                            &backup,
                            p.seq,
                            &p.request,
                            &p.extra,
                            self.config.backup_timeout,
                        )
                        .await
                    }
                };
                match answer {
                    Ok(answer) => {
                        self.judge(&backup, p.seq, &p.compare, &response, &answer)
                            .await;
                    }
                    Err(error) => {
                        self.change_state(
                            &backup,
                            Some(BackendState::InSync),
                            BackendState::Lagging,
                            &format!("request {}: {error}", p.seq),
                        );
                    }
                }
            }
            let outcome = match self.journal.commit(p.seq, response.clone()).await {
                Ok(()) => Ok(Committed {
                    seq: p.seq,
                    response,
                    primary: primary.name.clone(),
                    refused: false,
                }),
                Err(e) => Err(ReplicationError::Journal(e)),
            };
            self.resolve(p.seq);
            let _ = p.reply.send(outcome);
        }
        Ok(())
    }

    /// Controlled switchover: fence, drain, make `name` the primary, resume. The old primary
    /// stays as an in-sync backup (it processed everything). Returns the pause.
    pub async fn promote(self: &Arc<Self>, name: &str) -> Result<Duration, SwitchoverError> {
        let _one_change = self.topology_change.lock().await;
        let target = self
            .pool
            .get(name)
            .ok_or_else(|| SwitchoverError::UnknownBackend(name.to_owned()))?;
        let old = self.pool.primary();
        if Arc::ptr_eq(&target, &old) {
            return Err(SwitchoverError::AlreadyPrimary(name.to_owned()));
        }
        if target.state() != BackendState::InSync {
            return Err(SwitchoverError::NotInSync {
                name: name.to_owned(),
                state: target.state(),
            });
        }
        let started = Instant::now();
        self.fence();
        self.drain().await;
        // Drained: every admitted request finished on every in-sync backend, so the target has
        // acknowledged everything the old primary processed.
        if target.state() != BackendState::InSync {
            self.unfence();
            return Err(SwitchoverError::NotInSync {
                name: name.to_owned(),
                state: target.state(),
            });
        }
        self.pool.set_primary(target.clone());
        self.topology_changed(
            "primary-changed",
            Some(&target.name),
            &format!("controlled switchover from {}", old.name),
        );
        self.unfence();
        let pause = started.elapsed();
        Replicator::record_pause("switchover", pause);
        info!(primary = %target.name, pause_ms = pause.as_millis() as u64, "switchover finished");
        Ok(pause)
    }
}

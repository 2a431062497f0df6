//! View probes: read requests whose normalized answers must be equal on two backends for them
//! to count as logically equivalent.

use std::time::Duration;

use bytes::Bytes;
use lockstep_config::ViewProbe;
use lockstep_journal::{Header, RequestRecord};
use serde::Serialize;

use crate::compare::{CompareContext, compare_in};
use crate::{Backend, Transport, TransportError};

/// One probe whose answers differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeDifference {
    /// `GET /accounts`
    pub probe: String,
    /// What differs, in words.
    pub difference: String,
}

/// The read request a probe sends.
pub(crate) fn probe_request(probe: &ViewProbe) -> RequestRecord {
    RequestRecord {
        method: probe.method.clone(),
        uri: probe.path.clone(),
        headers: vec![Header::new("User-Agent", "lockstep-verify")],
        body: Bytes::new(),
    }
}

/// Sends a probe to `backend` in its local ids and brings its answer back to canonical ones, so
/// that two copies that mint different ids still show the same view.
pub(crate) async fn send_probe(
    transport: &dyn Transport,
    backend: &Backend,
    probe: &ViewProbe,
    timeout: Duration,
) -> Result<lockstep_journal::ResponseRecord, TransportError> {
    let request = probe_request(probe);
    let local = backend
        .ids
        .request_to_local(&probe.compare.translate, &request);
    let answer = transport
        .send(backend, local.as_ref().unwrap_or(&request), &[], timeout)
        .await?;
    Ok(backend
        .ids
        .response_to_canonical(&probe.compare.translate, &probe.compare.mint, &answer)
        .unwrap_or(answer))
}

/// Runs every probe on `reference` and `candidate`; returns the probes whose normalized answers
/// differ (empty: the views are equal).
pub async fn compare_views(
    transport: &dyn Transport,
    reference: &Backend,
    candidate: &Backend,
    probes: &[ViewProbe],
    timeout: Duration,
) -> Result<Vec<ProbeDifference>, (String, TransportError)> {
    let mut differences = Vec::new();
    for probe in probes {
        let name = format!("{} {}", probe.method, probe.path);
        let a = send_probe(transport, reference, probe, timeout)
            .await
            .map_err(|e| (reference.name.clone(), e))?;
        let b = send_probe(transport, candidate, probe, timeout)
            .await
            .map_err(|e| (candidate.name.clone(), e))?;
        let ctx = CompareContext::for_backends([&reference.url, &candidate.url]);
        if let Some(d) = compare_in(&ctx, &probe.compare, &a, &b) {
            differences.push(ProbeDifference {
                probe: name,
                difference: d.to_string(),
            });
        }
    }
    Ok(differences)
}

/// Every probe's differences between `reference` and `candidate`, for `lockstep verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// `GET /accounts`
    pub probe: String,
    /// Each difference in words (at most `limit` per probe); empty when the answers are equal.
    pub differences: Vec<String>,
}

/// Runs every probe on both backends and lists what differs, up to `limit` differences per
/// probe.
pub async fn view_report(
    transport: &dyn Transport,
    reference: &Backend,
    candidate: &Backend,
    probes: &[ViewProbe],
    timeout: Duration,
    limit: usize,
) -> Result<Vec<ProbeReport>, (String, TransportError)> {
    let mut reports = Vec::new();
    for probe in probes {
        let (a, b) = futures::future::join(
            send_probe(transport, reference, probe, timeout),
            send_probe(transport, candidate, probe, timeout),
        )
        .await;
        let a = a.map_err(|e| (reference.name.clone(), e))?;
        let b = b.map_err(|e| (candidate.name.clone(), e))?;
        reports.push(ProbeReport {
            probe: format!("{} {}", probe.method, probe.path),
            differences: crate::compare::response_differences(
                &CompareContext::for_backends([&reference.url, &candidate.url]),
                &probe.compare,
                &a,
                &b,
                limit,
            )
            .iter()
            .map(ToString::to_string)
            .collect(),
        });
    }
    Ok(reports)
}

impl crate::Replicator {
    /// Compares each of `backends` with the primary on every probe, with admission fenced and
    /// drained meanwhile, so that both answer at the same point of the history (an in-flight
    /// write cannot pass for a difference). Returns each backend's report (or why its probes
    /// failed) and the pause.
    pub async fn verify_views(
        &self,
        backends: &[std::sync::Arc<Backend>],
        probes: &[ViewProbe],
        limit: usize,
    ) -> (
        Vec<(std::sync::Arc<Backend>, Result<Vec<ProbeReport>, String>)>,
        Duration,
    ) {
        let _one_change = self.topology_change.lock().await;
        let fenced_at = std::time::Instant::now();
        self.fence();
        self.drain().await;
        let primary = self.pool().primary();
        let timeout = self.config().backup_timeout;
        let transport = self.transport().as_ref();
        let mut checks = Vec::with_capacity(backends.len());
        for b in backends {
            let primary = primary.clone();
            checks.push(async move {
                let report = view_report(transport, &primary, b, probes, timeout, limit)
                    .await
                    .map_err(|(who, e)| format!("{who} did not answer a probe: {e}"));
                (b.clone(), report)
            });
        }
        let results = futures::future::join_all(checks).await;
        self.unfence();
        crate::Replicator::record_pause("verify", fenced_at.elapsed());
        (results, fenced_at.elapsed())
    }
}

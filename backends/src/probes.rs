//! View probes: read requests whose normalized answers must be equal on two backends for them
//! to count as logically equivalent.

use std::time::Duration;

use bytes::Bytes;
use lockstep_config::ViewProbe;
use lockstep_journal::{Header, RequestRecord};
use serde::Serialize;

use crate::compare::compare_responses;
use crate::{Backend, Transport, TransportError};

/// One probe whose answers differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeDifference {
    /// `GET /accounts`
    pub probe: String,
    /// What differs, in words.
    pub difference: String,
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
        let request = RequestRecord {
            method: probe.method.clone(),
            uri: probe.path.clone(),
            headers: vec![Header::new("User-Agent", "lockstep-verify")],
            body: Bytes::new(),
        };
        let name = format!("{} {}", probe.method, probe.path);
        let a = transport
            .send(reference, &request, &[], timeout)
            .await
            .map_err(|e| (reference.name.clone(), e))?;
        let b = transport
            .send(candidate, &request, &[], timeout)
            .await
            .map_err(|e| (candidate.name.clone(), e))?;
        if let Some(d) = compare_responses(&probe.compare, &a, &b) {
            differences.push(ProbeDifference {
                probe: name,
                difference: d.to_string(),
            });
        }
    }
    Ok(differences)
}

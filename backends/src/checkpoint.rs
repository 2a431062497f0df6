//! Checkpoints: a backend's whole state, exported at a known seq through the `[checkpoint]
//! export` hook and loaded into another backend through the `import` hook, so that a new backend
//! replays only the journal after that seq.
//!
//! The gateway never interprets a checkpoint: it is the bytes the export hook produced (the
//! response body of a request hook, the standard output of a command), handed unchanged to the
//! import hook (as the request body, or on the command's standard input).

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use lockstep_config::Hook;
use lockstep_journal::{Header, RequestRecord, Seq};
use tokio::io::AsyncWriteExt;
use tracing::info;

use crate::{Backend, BackendState, Replicator, Transport};

/// A backend's state at `seq`: every request `<= seq` applied, none after.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub seq: Seq,
    /// The backend it was exported from.
    pub source: String,
    /// That backend's implementation label.
    pub implementation: String,
    /// The `Content-Type` the export answered with, given back to the import request.
    pub content_type: Option<String>,
    pub data: Bytes,
    pub taken_at: SystemTime,
    /// The source copy's minted-identifier pairs learned up to `seq`, by seq (see
    /// [`crate::IdMap`]): a copy loaded from this checkpoint holds the source's ids.
    pub ids: Vec<(Seq, Vec<(String, String)>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "no checkpoint hooks are configured; set [checkpoint] export and import (for the demo service: {{ request = \"GET /admin/export\" }} and {{ request = \"POST /admin/import\" }})"
    )]
    NotConfigured,
    #[error("the checkpoint export from {backend} failed: {reason}")]
    Export { backend: String, reason: String },
    #[error("the checkpoint import into {backend} failed: {reason}")]
    Import { backend: String, reason: String },
    #[error("no backend is in-sync to export a checkpoint from")]
    NoSource,
}

impl Replicator {
    /// Exports a checkpoint at the journal's tail: fences admission, drains what is in flight
    /// (so every in-sync backend has applied exactly the requests up to the tail), exports from
    /// an in-sync backup (the primary only when there is none), resumes. Returns the checkpoint
    /// and the pause.
    pub async fn take_checkpoint(
        &self,
        export: &Hook,
        timeout: Duration,
    ) -> Result<(Checkpoint, Duration), CheckpointError> {
        let _one_change = self.topology_change.lock().await;
        let fenced_at = Instant::now();
        self.fence();
        self.drain().await;
        let seq = self.last_seq();
        let primary = self.pool().primary();
        let source = self
            .pool()
            .backups()
            .into_iter()
            .find(|b| b.state() == BackendState::InSync && b.acked_seq() >= seq)
            .or_else(|| (primary.state() == BackendState::InSync).then(|| primary.clone()));
        let result = match &source {
            Some(source) => export_state(export, source, self.transport().as_ref(), timeout)
                .await
                .map_err(|reason| CheckpointError::Export {
                    backend: source.name.clone(),
                    reason,
                }),
            None => Err(CheckpointError::NoSource),
        };
        self.unfence();
        let pause = fenced_at.elapsed();
        Replicator::record_pause("checkpoint", pause);
        let (data, content_type) = result?;
        let source = source.expect("exported from a source");
        info!(seq, source = %source.name, bytes = data.len(), pause_ms = pause.as_millis() as u64, "checkpoint taken");
        Ok((
            Checkpoint {
                seq,
                source: source.name.clone(),
                implementation: source.implementation.clone(),
                content_type,
                data,
                taken_at: self.clock().now(),
                ids: source.ids.pairs_through(seq),
            },
            pause,
        ))
    }
}

/// Runs the export hook against `backend`: the response body (2xx) or the command's standard
/// output is the checkpoint.
pub async fn export_state(
    hook: &Hook,
    backend: &Backend,
    transport: &dyn Transport,
    timeout: Duration,
) -> Result<(Bytes, Option<String>), String> {
    match hook {
        Hook::Command(command) => {
            let output = run(command, backend, None, timeout).await?;
            Ok((Bytes::from(output), None))
        }
        Hook::Request { method, path } => {
            let request = RequestRecord {
                method: method.clone(),
                uri: path.clone(),
                headers: vec![Header::new("User-Agent", "lockstep-checkpoint")],
                body: Bytes::new(),
            };
            let r = transport
                .send(backend, &request, &[], timeout)
                .await
                .map_err(|e| format!("{method} {path} failed: {e}"))?;
            if !(200..300).contains(&r.status) {
                return Err(format!("{method} {path} answered {}", r.status));
            }
            let content_type = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-type"))
                .map(|h| String::from_utf8_lossy(&h.value).into_owned());
            Ok((r.body, content_type))
        }
    }
}

/// Runs the import hook against `backend` with `checkpoint` as the request body or the
/// command's standard input.
pub async fn import_state(
    hook: &Hook,
    backend: &Backend,
    transport: &dyn Transport,
    timeout: Duration,
    checkpoint: &Checkpoint,
) -> Result<(), String> {
    match hook {
        Hook::Command(command) => {
            run(command, backend, Some(checkpoint), timeout).await?;
            Ok(())
        }
        Hook::Request { method, path } => {
            let mut headers = vec![
                Header::new("User-Agent", "lockstep-checkpoint"),
                Header::new("Lockstep-Checkpoint-Sequence", checkpoint.seq.to_string()),
            ];
            if let Some(ct) = &checkpoint.content_type {
                headers.push(Header::new("Content-Type", ct.clone()));
            }
            let request = RequestRecord {
                method: method.clone(),
                uri: path.clone(),
                headers,
                body: checkpoint.data.clone(),
            };
            let r = transport
                .send(backend, &request, &[], timeout)
                .await
                .map_err(|e| format!("{method} {path} failed: {e}"))?;
            if (200..300).contains(&r.status) {
                Ok(())
            } else {
                Err(format!(
                    "{method} {path} answered {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).trim()
                ))
            }
        }
    }
}

/// Runs `command` with `sh -c`; the backend is in `LOCKSTEP_BACKEND` and `LOCKSTEP_BACKEND_URL`,
/// the checkpoint's seq in `LOCKSTEP_CHECKPOINT_SEQ` and its bytes on standard input (import).
/// Returns the standard output.
async fn run(
    command: &str,
    backend: &Backend,
    input: Option<&Checkpoint>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("LOCKSTEP_BACKEND", &backend.name)
        .env("LOCKSTEP_BACKEND_URL", backend.url.as_str())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(c) = input {
        cmd.env("LOCKSTEP_CHECKPOINT_SEQ", c.seq.to_string());
    }
    let work = async {
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run `{command}`: {e}"))?;
        if let (Some(c), Some(mut stdin)) = (input, child.stdin.take()) {
            let data = c.data.clone();
            // Written from a task of its own, so that a command that writes a lot before it
            // reads cannot deadlock against us.
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
            });
        }
        child
            .wait_with_output()
            .await
            .map_err(|e| format!("`{command}` failed: {e}"))
    };
    let output = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("`{command}` did not finish within {timeout:?}"))??;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(format!(
            "`{command}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

//! Running a configured hook against a backend: a shell command, or an HTTP request to it.

use std::time::Duration;

use bytes::Bytes;
use lockstep_config::Hook;
use lockstep_journal::{Header, RequestRecord};

use crate::{Backend, Transport};

/// Runs `hook` for `backend`; `Err` says what went wrong in words. A command sees the backend
/// as `LOCKSTEP_BACKEND` (name) and `LOCKSTEP_BACKEND_URL`; a request must answer 2xx.
pub async fn run_hook(
    hook: &Hook,
    backend: &Backend,
    transport: &dyn Transport,
    timeout: Duration,
) -> Result<(), String> {
    match hook {
        Hook::Command(command) => {
            let run = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .env("LOCKSTEP_BACKEND", &backend.name)
                .env("LOCKSTEP_BACKEND_URL", backend.url.as_str())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(timeout, run)
                .await
                .map_err(|_| format!("`{command}` did not finish within {timeout:?}"))?
                .map_err(|e| format!("cannot run `{command}`: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "`{command}` failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        }
        Hook::Request { method, path } => {
            let request = RequestRecord {
                method: method.clone(),
                uri: path.clone(),
                headers: vec![Header::new("User-Agent", "lockstep")],
                body: Bytes::new(),
            };
            let r = transport
                .send(backend, &request, &[], timeout)
                .await
                .map_err(|e| format!("{method} {path} on {} failed: {e}", backend.name))?;
            if (200..300).contains(&r.status) {
                Ok(())
            } else {
                Err(format!(
                    "{method} {path} on {} answered {}",
                    backend.name, r.status
                ))
            }
        }
    }
}

//! `verify`: asks the gateway's admin listener whether every backend shows the primary's view
//! (`GET /verify`) and turns the answer into a report and an exit code.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The admin listener's answer to `GET /verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    /// Whether every backend's view equals the primary's.
    pub equal: bool,
    /// The primary's name.
    pub primary: String,
    /// The backups, each compared with the primary.
    #[serde(default)]
    pub backends: Vec<BackendView>,
}

/// One backup compared with the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    /// The backend's name.
    pub name: String,
    /// Its implementation label.
    #[serde(default)]
    pub implementation: String,
    /// Whether its view equals the primary's.
    pub equal: bool,
    /// What differs, probe by probe.
    #[serde(default)]
    pub differences: Vec<Difference>,
}

/// One difference found by a view probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The probe, e.g. `GET /accounts`.
    pub probe: String,
    /// What differs, e.g. `body at /0/balance: primary 10, backup 12`.
    pub difference: String,
}

impl VerifyAnswer {
    /// Whether the primary and every backend agree.
    pub fn all_equal(&self) -> bool {
        self.equal && self.backends.iter().all(|b| b.equal)
    }
}

impl fmt::Display for VerifyAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "primary {}", self.primary)?;
        for backend in &self.backends {
            let label = if backend.implementation.is_empty() {
                backend.name.clone()
            } else {
                format!("{} ({})", backend.name, backend.implementation)
            };
            let verdict = if backend.equal { "equal" } else { "DIFFERS" };
            writeln!(f, "backend {label}: {verdict}")?;
            for d in &backend.differences {
                writeln!(f, "  {}: {}", d.probe, d.difference)?;
            }
        }
        let differing = self.backends.iter().filter(|b| !b.equal).count();
        if self.all_equal() {
            writeln!(f, "verdict: every backend shows the primary's view")
        } else if differing > 0 {
            writeln!(
                f,
                "verdict: {differing} of {} backends differ from the primary",
                self.backends.len()
            )
        } else {
            writeln!(f, "verdict: the gateway reports the views as not equal")
        }
    }
}

/// Why the verification could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token file is missing, unreadable or empty.
    #[error("cannot use token file {path}: {detail}")]
    TokenFile {
        /// The path given.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// No HTTP answer.
    #[error("cannot reach the admin listener at {url}: {detail}; check --admin")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the client said.
        detail: String,
    },
    /// An error answer.
    #[error("the admin listener answered {status}: {error}: {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` field (or the status text).
        error: String,
        /// The `detail` field (or the body).
        detail: String,
    },
    /// A success status with a body that is not the expected JSON.
    #[error("the admin listener's answer is not a verify report: {0}")]
    BadAnswer(String),
}

/// The error body of the admin listener.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    detail: String,
}

/// Reads a bearer token: the file's content without surrounding whitespace.
pub fn read_token(path: &Path) -> Result<String, VerifyError> {
    let token_error = |detail: String| VerifyError::TokenFile {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| token_error(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(token_error("the file is empty".to_owned()));
    }
    Ok(token.to_owned())
}

/// Calls `GET {admin}/verify`, with `token` as a bearer token when given.
pub async fn verify(
    admin: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<VerifyAnswer, VerifyError> {
    let base = admin.trim_end_matches('/');
    let url = if base.contains("://") {
        format!("{base}/verify")
    } else {
        format!("http://{base}/verify")
    };
    let unreachable = |e: reqwest::Error| VerifyError::Unreachable {
        url: url.clone(),
        detail: e.to_string(),
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(unreachable)?;
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        let (error, detail) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.error, e.detail),
            Err(_) => (
                status.canonical_reason().unwrap_or("error").to_owned(),
                String::from_utf8_lossy(&body).trim().to_owned(),
            ),
        };
        return Err(VerifyError::Refused {
            status: status.as_u16(),
            error,
            detail,
        });
    }
    serde_json::from_slice(&body).map_err(|e| VerifyError::BadAnswer(e.to_string()))
}

//! The CLI's side of the admin API: every admin subcommand is a request to a running gateway's
//! admin listener (`--admin URL`, with the bearer token from `--token-file` when one is set).

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// A client for one gateway's admin listener.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// `base` like `http://127.0.0.1:8081`; `token_file` holds the bearer token, if any.
    pub fn new(base: &str, token_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn json(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let response = self
            .request(method, path)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin listener at {}", self.base))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("the admin listener answered something other than JSON")?;
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("");
            bail!(
                "{} ({status}): {detail}",
                body["error"].as_str().unwrap_or("error")
            );
        }
        Ok(body)
    }

    pub async fn status(&self) -> anyhow::Result<Value> {
        self.json(reqwest::Method::GET, "/status").await
    }

    pub async fn promote(&self, name: &str) -> anyhow::Result<Value> {
        self.json(reqwest::Method::POST, &format!("/backends/{name}/promote"))
            .await
    }

    pub async fn rejoin(&self, name: &str, reset: bool) -> anyhow::Result<Value> {
        let query = if reset { "?reset=true" } else { "" };
        self.json(
            reqwest::Method::POST,
            &format!("/backends/{name}/rejoin{query}"),
        )
        .await
    }

    /// Prints the event stream's data lines until it ends.
    pub async fn tail_events(&self, mut print: impl FnMut(&str)) -> anyhow::Result<()> {
        let mut response = self
            .request(reqwest::Method::GET, "/events")
            .send()
            .await
            .with_context(|| format!("cannot reach the admin listener at {}", self.base))?;
        if !response.status().is_success() {
            bail!("the admin listener answered {}", response.status());
        }
        let mut pending = String::new();
        while let Some(chunk) = response.chunk().await? {
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let frame: String = pending.drain(..end + 2).collect();
                for line in frame.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        print(data);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The status as a table; returns whether the deployment is degraded (no in-sync backup, or a
/// backend diverged).
pub fn status_table(status: &Value) -> (String, bool) {
    let mut out = format!(
        "primary {}   epoch {}   last seq {}   committed seq {}\n\n",
        status["primary"].as_str().unwrap_or("?"),
        status["epoch"],
        status["last_seq"],
        status["committed_seq"]
    );
    out.push_str(&format!(
        "{:<12} {:<8} {:<9} {:<16} {:>10} {:>8}  {}\n",
        "BACKEND", "ROLE", "STATE", "IMPLEMENTATION", "ACKED SEQ", "LAG", "URL"
    ));
    let last = status["last_seq"].as_u64().unwrap_or(0);
    let mut in_sync_backups = 0;
    let mut diverged = false;
    for b in status["backends"].as_array().into_iter().flatten() {
        let acked = b["acked_seq"].as_u64().unwrap_or(0);
        let state = b["state"].as_str().unwrap_or("?");
        let role = b["role"].as_str().unwrap_or("?");
        if role == "backup" && state == "in-sync" {
            in_sync_backups += 1;
        }
        diverged |= state == "diverged";
        out.push_str(&format!(
            "{:<12} {:<8} {:<9} {:<16} {:>10} {:>8}  {}\n",
            b["name"].as_str().unwrap_or("?"),
            role,
            state,
            b["implementation"].as_str().unwrap_or(""),
            acked,
            last.saturating_sub(acked),
            b["url"].as_str().unwrap_or("")
        ));
    }
    let degraded = in_sync_backups == 0 || diverged;
    if degraded {
        out.push_str("\nDEGRADED: ");
        out.push_str(if diverged {
            "a backend diverged"
        } else {
            "no backup is in-sync (no failover possible)"
        });
        out.push('\n');
    }
    (out, degraded)
}

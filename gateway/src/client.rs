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
        let parsed = url::Url::parse(base).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        if parsed.is_none() {
            bail!(
                "the admin URL {base:?} (--admin or LOCKSTEP_ADMIN) is not an http:// or https:// URL; write it like http://127.0.0.1:8081"
            );
        }
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
        self.send_json(self.request(method, path)).await
    }

    async fn send_json(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
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

    pub async fn backends(&self) -> anyhow::Result<Value> {
        self.json(reqwest::Method::GET, "/backends").await
    }

    /// Adds a backend and waits until it is in-sync (or the join failed). `checkpoint`: start
    /// from the latest checkpoint (`Some(true)`), never (`Some(false)`), or when there is one.
    pub async fn add_backend(
        &self,
        name: &str,
        url: &str,
        implementation: Option<&str>,
        checkpoint: Option<bool>,
    ) -> anyhow::Result<Value> {
        let mut body = serde_json::json!({ "name": name, "url": url });
        if let Some(i) = implementation {
            body["implementation"] = i.into();
        }
        if let Some(c) = checkpoint {
            body["checkpoint"] = c.into();
        }
        self.send_json(self.request(reqwest::Method::POST, "/backends").json(&body))
            .await
    }

    pub async fn remove_backend(&self, name: &str) -> anyhow::Result<Value> {
        self.json(reqwest::Method::DELETE, &format!("/backends/{name}"))
            .await
    }

    /// Runs the view probes on `names` (every backup when empty) against the primary.
    pub async fn verify(&self, names: &[String]) -> anyhow::Result<Value> {
        let query = if names.is_empty() {
            String::new()
        } else {
            format!("?backend={}", names.join(","))
        };
        self.json(reqwest::Method::GET, &format!("/verify{query}"))
            .await
    }

    /// What the noise finder learned.
    pub async fn noise(&self) -> anyhow::Result<Value> {
        self.json(reqwest::Method::GET, "/noise").await
    }

    /// Starts learning (`answers=N` or `for=DURATION`).
    pub async fn learn_noise(&self, query: &str) -> anyhow::Result<Value> {
        self.json(reqwest::Method::POST, &format!("/noise/learn?{query}"))
            .await
    }

    pub async fn stop_learning(&self) -> anyhow::Result<Value> {
        self.json(reqwest::Method::DELETE, "/noise/learn").await
    }

    pub async fn checkpoints(&self) -> anyhow::Result<Value> {
        self.json(reqwest::Method::GET, "/checkpoints").await
    }

    pub async fn take_checkpoint(&self) -> anyhow::Result<Value> {
        self.json(reqwest::Method::POST, "/checkpoints").await
    }

    /// The progress of `name`'s catch-up, when one is running or finished.
    pub async fn join_progress(&self, name: &str) -> anyhow::Result<Option<Value>> {
        let status = self.status().await?;
        Ok(status["joins"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["backend"] == name)
            .cloned())
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
        // The gateway ends the stream when it stops, which may cut the last chunk short: that is
        // the stream's normal end, not a failure.
        while let Ok(Some(chunk)) = response.chunk().await {
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
    let mut notes = String::new();
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
        let name = b["name"].as_str().unwrap_or("?");
        if let Some(retrying) = b["retrying"].as_str() {
            notes.push_str(&format!("  {name}: retrying {retrying}\n"));
        }
        if state != "in-sync" {
            if let Some(detail) = b["detail"].as_str().filter(|d| !d.is_empty()) {
                notes.push_str(&format!("  {name} is {state}: {detail}\n"));
            }
        }
    }
    if status["learning_noise"] == true {
        notes.push_str("  learning noise: differences are recorded and no backup is ejected (lockstep noise)\n");
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
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

/// A readable report of `GET /noise`: per route, each place that differed, its kind, how often,
/// examples, the rule that silences it, and a warning where it looks like a real divergence.
pub fn noise_report(report: &Value) -> String {
    let mut out = format!(
        "noise finder: {} ({} backup answers compared since {}, for {})\n",
        if report["learning"] == true {
            "learning, no backup is ejected"
        } else {
            "not learning"
        },
        report["answers"],
        report["started"].as_str().unwrap_or("?"),
        report["until"].as_str().unwrap_or("?"),
    );
    let routes = report["routes"].as_array().cloned().unwrap_or_default();
    if routes.is_empty() {
        out.push_str("\nno difference seen yet\n");
    }
    for route in &routes {
        out.push_str(&format!("\n{}\n", route["route"].as_str().unwrap_or("?")));
        for p in route["places"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {:<32} {:<11} {}/{} answers",
                p["place"].as_str().unwrap_or("?"),
                p["kind"].as_str().unwrap_or("?"),
                p["count"],
                p["answers"]
            ));
            if p["suspicious"] == true {
                out.push_str("   LOOKS LIKE A REAL DIVERGENCE: check it before silencing it");
            }
            out.push('\n');
            for e in p["examples"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "      primary {}  backup {}\n",
                    e[0].as_str().unwrap_or(""),
                    e[1].as_str().unwrap_or("")
                ));
            }
            match p["rule"].as_str() {
                Some(rule) => out.push_str(&format!("      rule: {rule}\n")),
                None => out.push_str("      never noise: fix the copy\n"),
            }
        }
    }
    out
}

/// A readable report of `GET /verify`; returns whether every backend's view equals the
/// primary's.
pub fn verify_report(report: &Value) -> (String, bool) {
    let mut out = String::new();
    let primary = report["primary"].as_str().unwrap_or("?");
    let primary_impl = report["implementation"].as_str().unwrap_or("");
    for b in report["backends"].as_array().into_iter().flatten() {
        let name = b["name"].as_str().unwrap_or("?");
        let implementation = b["implementation"].as_str().unwrap_or("");
        let state = b["state"].as_str().unwrap_or("?");
        if b["equal"] == true {
            out.push_str(&format!(
                "{name} ({implementation}, {state}) equals {primary} ({primary_impl})\n"
            ));
            continue;
        }
        out.push_str(&format!(
            "{name} ({implementation}, {state}) DIFFERS from {primary} ({primary_impl})\n"
        ));
        if let Some(e) = b["error"].as_str() {
            out.push_str(&format!("    {e}\n"));
        }
        for p in b["probes"].as_array().into_iter().flatten() {
            let diffs: Vec<&str> = p["differences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if diffs.is_empty() {
                continue;
            }
            out.push_str(&format!("  {}\n", p["probe"].as_str().unwrap_or("?")));
            for d in diffs {
                out.push_str(&format!("    - {d}\n"));
            }
        }
    }
    let equal = report["equal"] == true;
    out.push_str(&format!(
        "{} (admission paused {:.1} ms for the check)\n",
        if equal {
            "views are equal"
        } else {
            "views differ"
        },
        report["pause_ms"].as_f64().unwrap_or(0.0)
    ));
    (out, equal)
}

/// Runs `join` (an add or a rejoin of `name`) while showing its progress on stderr: entries
/// replayed of the total, rate, lag, ETA. Returns the join's report.
pub async fn with_progress(
    client: &AdminClient,
    name: &str,
    join: impl std::future::Future<Output = anyhow::Result<Value>>,
) -> anyhow::Result<Value> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} entries  {per_sec}  lag {msg}  eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix("starting");
    let poll = async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if let Ok(Some(p)) = client.join_progress(name).await {
                let from = p["from_seq"].as_u64().unwrap_or(1);
                let last = p["last_seq"].as_u64().unwrap_or(0);
                let next = p["next_seq"].as_u64().unwrap_or(from);
                bar.set_length((last + 1).saturating_sub(from));
                bar.set_position(p["replayed"].as_u64().unwrap_or(0));
                bar.set_prefix(p["phase"].as_str().unwrap_or("").to_owned());
                bar.set_message((last + 1).saturating_sub(next).to_string());
            }
        }
    };
    let result = tokio::select! {
        r = join => r,
        () = poll => unreachable!("polls until the join ends"),
    };
    bar.finish_and_clear();
    result
}

/// One line that sums up a finished join.
pub fn join_summary(name: &str, report: &Value) -> String {
    let replayed = report["replayed"].as_u64().unwrap_or(0);
    let elapsed_ms = report["elapsed_ms"].as_u64().unwrap_or(0);
    let pause = format!("admission paused {} ms", report["pause_ms"]);
    if replayed == 0 {
        return format!("{name} is in-sync: nothing to replay (it had every request); {pause}");
    }
    let requests = if replayed == 1 { "request" } else { "requests" };
    let seqs = if report["from"] == report["to"] {
        format!("seq {}", report["from"])
    } else {
        format!("seq {} to {}", report["from"], report["to"])
    };
    let took = if elapsed_ms < 1000 {
        format!("{elapsed_ms} ms")
    } else {
        let rate = replayed as f64 * 1000.0 / elapsed_ms as f64;
        format!("{:.1} s ({rate:.0}/s)", elapsed_ms as f64 / 1000.0)
    };
    format!("{name} is in-sync: replayed {replayed} {requests} ({seqs}) in {took}; {pause}")
}

#[cfg(test)]
mod tests {
    use super::join_summary;

    fn report(from: u64, to: u64, replayed: u64, elapsed_ms: u64) -> serde_json::Value {
        serde_json::json!({
            "backend": "b", "from": from, "to": to, "replayed": replayed,
            "assumed_applied": [], "pause_ms": 3, "elapsed_ms": elapsed_ms,
        })
    }

    #[test]
    fn a_join_with_nothing_to_replay_says_so() {
        // The journal's tail is 51 and b had it all: the report says from 52 to 51.
        assert_eq!(
            join_summary("b", &report(52, 51, 0, 4)),
            "b is in-sync: nothing to replay (it had every request); admission paused 3 ms"
        );
    }

    #[test]
    fn short_and_long_joins_read_naturally() {
        assert_eq!(
            join_summary("b", &report(3, 3, 1, 8)),
            "b is in-sync: replayed 1 request (seq 3) in 8 ms; admission paused 3 ms"
        );
        assert_eq!(
            join_summary("b", &report(1, 90112, 90112, 17_600)),
            "b is in-sync: replayed 90112 requests (seq 1 to 90112) in 17.6 s (5120/s); admission paused 3 ms"
        );
    }
}

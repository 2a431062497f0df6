//! `lockstep rollout PLAN.toml`: moves a running deployment to another implementation of the
//! service, one verified step at a time, with the service serving throughout.
//!
//! The steps, from the deployment's current topology and the plan's new instances (empty,
//! running, in the order given):
//!
//! 1. add the first new instance as an additional backup (catch-up + view check);
//! 2. for each old backup: add the next new instance, then remove the old backup;
//! 3. switch the primary over to the first new instance (fence, drain, swap, resume);
//! 4. remove the old primary;
//! 5. add any remaining new instances as further backups.
//!
//! After every step the views of all in-sync backups are compared with the primary's. The first
//! failure stops the rollout: nothing after it runs, and every step so far left the deployment
//! serving with an in-sync backup.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::client::{AdminClient, join_summary, verify_report, with_progress};

/// The plan file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The implementation label of the new instances (`sqlite`, `v2`).
    pub implementation: String,
    /// Start each new instance from the latest checkpoint instead of replaying the whole
    /// journal (needs `[checkpoint]` hooks). Default: use one when there is one.
    #[serde(default)]
    pub checkpoint: Option<bool>,
    /// The new instances, empty and running.
    pub backends: Vec<NewBackend>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBackend {
    pub name: String,
    pub url: String,
}

impl Plan {
    pub fn load(path: &Path) -> anyhow::Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plan {}", path.display()))?;
        let plan: Plan = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid rollout plan", path.display()))?;
        if plan.implementation.trim().is_empty() {
            bail!(
                "{}: `implementation` must name the new implementation",
                path.display()
            );
        }
        if plan.backends.is_empty() {
            bail!(
                "{}: list the new instances as [[backends]] name = \"...\", url = \"http://...\"",
                path.display()
            );
        }
        Ok(plan)
    }
}

/// One step of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Add {
        name: String,
        url: String,
        why: &'static str,
    },
    Remove {
        name: String,
    },
    Promote {
        name: String,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Add { name, url, why } => write!(f, "add {name} at {url} ({why})"),
            Step::Remove { name } => write!(f, "remove {name}"),
            Step::Promote { name } => write!(f, "switch the primary over to {name}"),
        }
    }
}

/// The steps that move the deployment described by `status` (`GET /status`) to `plan`. Works
/// from wherever the deployment stands, so a rollout that stopped can be run again: plan
/// instances already present (with the new implementation) count as added.
pub fn steps(plan: &Plan, status: &Value) -> anyhow::Result<Vec<Step>> {
    let backends = status["backends"].as_array().cloned().unwrap_or_default();
    let new_impl = plan.implementation.as_str();
    let primary = status["primary"].as_str().unwrap_or_default().to_owned();
    let primary_entry = backends
        .iter()
        .find(|b| b["name"] == primary.as_str())
        .context("the status names no primary")?;
    let primary_old = primary_entry["implementation"] != new_impl;
    let old_backups: Vec<String> = backends
        .iter()
        .filter(|b| b["role"] == "backup" && b["implementation"] != new_impl)
        .filter_map(|b| b["name"].as_str().map(str::to_owned))
        .collect();
    let mut absent = Vec::new();
    for n in &plan.backends {
        match backends.iter().find(|b| b["name"] == n.name.as_str()) {
            Some(b) if b["implementation"] != new_impl => bail!(
                "a backend named {} already exists with implementation {}",
                n.name,
                b["implementation"]
            ),
            Some(_) => {}
            None => absent.push(n),
        }
    }
    let mut successor = backends
        .iter()
        .find(|b| b["role"] == "backup" && b["implementation"] == new_impl)
        .and_then(|b| b["name"].as_str().map(str::to_owned));
    let needed = usize::from(primary_old && successor.is_none()) + old_backups.len();
    if absent.len() < needed {
        bail!(
            "the plan lists {} new instance(s) not added yet; {needed} are needed (one additional backup of the new implementation, and one for each of the {} old backup(s))",
            absent.len(),
            old_backups.len()
        );
    }
    let mut absent = absent.into_iter();
    let mut steps = Vec::new();
    if primary_old && successor.is_none() {
        let n = absent.next().expect("counted above");
        steps.push(Step::Add {
            name: n.name.clone(),
            url: n.url.clone(),
            why: "additional backup of the new implementation",
        });
        successor = Some(n.name.clone());
    }
    for old in old_backups {
        let n = absent.next().expect("counted above");
        steps.push(Step::Add {
            name: n.name.clone(),
            url: n.url.clone(),
            why: "replaces an old backup",
        });
        steps.push(Step::Remove { name: old });
    }
    if primary_old {
        steps.push(Step::Promote {
            name: successor.expect("added above when missing"),
        });
        steps.push(Step::Remove { name: primary });
    }
    for n in absent {
        steps.push(Step::Add {
            name: n.name.clone(),
            url: n.url.clone(),
            why: "additional backup",
        });
    }
    if steps.is_empty() {
        bail!("every backend already runs {new_impl}: nothing to roll out");
    }
    Ok(steps)
}

/// Runs `plan` against the gateway; prints each step and its verification. With `dry_run`, only
/// prints the steps.
pub async fn run(client: &AdminClient, plan: &Plan, dry_run: bool) -> anyhow::Result<()> {
    let status = client.status().await?;
    let (_, degraded) = crate::client::status_table(&status);
    let steps = steps(plan, &status)?;
    println!(
        "rollout to {} in {} steps:",
        plan.implementation,
        steps.len()
    );
    for (i, s) in steps.iter().enumerate() {
        println!("  {}. {s}", i + 1);
    }
    if dry_run {
        return Ok(());
    }
    if degraded {
        bail!("the deployment is degraded (see `lockstep status`); fix it before a rollout");
    }
    let started = std::time::Instant::now();
    for (i, step) in steps.iter().enumerate() {
        println!("step {}/{}: {step}", i + 1, steps.len());
        let done = run_step(client, plan, step).await;
        let checked = match done {
            Ok(line) => {
                println!("  {line}");
                check(client).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            let status = client.status().await.ok();
            let table = status
                .as_ref()
                .map(|s| crate::client::status_table(s).0)
                .unwrap_or_default();
            bail!(
                "step {} ({step}) failed: {e:#}\nthe rollout stopped; the steps before it are complete and the deployment is serving:\n{table}",
                i + 1
            );
        }
    }
    println!(
        "rollout to {} finished in {:.1} s",
        plan.implementation,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run_step(client: &AdminClient, plan: &Plan, step: &Step) -> anyhow::Result<String> {
    match step {
        Step::Add { name, url, .. } => {
            let report = with_progress(
                client,
                name,
                client.add_backend(name, url, Some(&plan.implementation), plan.checkpoint),
            )
            .await?;
            Ok(join_summary(name, &report))
        }
        Step::Remove { name } => {
            client.remove_backend(name).await?;
            Ok(format!("{name} removed"))
        }
        Step::Promote { name } => {
            let r = client.promote(name).await?;
            Ok(format!(
                "{name} is the primary; admission paused {:.1} ms",
                r["pause_ms"].as_f64().unwrap_or(0.0)
            ))
        }
    }
}

/// After a step: every in-sync backup's view equals the primary's.
async fn check(client: &AdminClient) -> anyhow::Result<()> {
    let report = client.verify(&[]).await?;
    let in_sync_differ = report["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["state"] == "in-sync" && b["equal"] != true);
    if in_sync_differ {
        bail!("{}", verify_report(&report).0);
    }
    println!("  verified: the views of the in-sync backups equal the primary's");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(n: usize) -> Plan {
        Plan {
            implementation: "sqlite".into(),
            checkpoint: None,
            backends: (1..=n)
                .map(|i| NewBackend {
                    name: format!("n{i}"),
                    url: format!("http://127.0.0.1:910{i}"),
                })
                .collect(),
        }
    }

    fn status() -> Value {
        serde_json::json!({
            "primary": "a",
            "backends": [
                {"name": "a", "role": "primary", "implementation": "memory", "state": "in-sync"},
                {"name": "b", "role": "backup", "implementation": "memory", "state": "in-sync"},
                {"name": "c", "role": "backup", "implementation": "memory", "state": "in-sync"},
            ]
        })
    }

    #[test]
    fn the_steps_follow_the_upgrade_order() {
        let steps: Vec<String> = steps(&plan(4), &status())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            steps,
            vec![
                "add n1 at http://127.0.0.1:9101 (additional backup of the new implementation)",
                "add n2 at http://127.0.0.1:9102 (replaces an old backup)",
                "remove b",
                "add n3 at http://127.0.0.1:9103 (replaces an old backup)",
                "remove c",
                "switch the primary over to n1",
                "remove a",
                "add n4 at http://127.0.0.1:9104 (additional backup)",
            ]
        );
    }

    #[test]
    fn too_few_instances_or_a_finished_rollout_are_refused() {
        let e = steps(&plan(2), &status()).unwrap_err().to_string();
        assert!(e.contains("3 are needed"), "{e}");
        let mut done = status();
        for i in 0..3 {
            done["backends"][i]["implementation"] = "sqlite".into();
        }
        let e = steps(&plan(0), &done).unwrap_err().to_string();
        assert!(e.contains("nothing to roll out"), "{e}");
        let mut clash = plan(4);
        clash.backends[2].name = "b".into();
        let e = steps(&clash, &status()).unwrap_err().to_string();
        assert!(e.contains("already exists with implementation"), "{e}");
    }

    #[test]
    fn a_stopped_rollout_resumes_from_where_the_deployment_stands() {
        // Steps 1 to 3 were done: n1 and n2 were added, b removed.
        let status = serde_json::json!({
            "primary": "a",
            "backends": [
                {"name": "a", "role": "primary", "implementation": "memory"},
                {"name": "c", "role": "backup", "implementation": "memory"},
                {"name": "n1", "role": "backup", "implementation": "sqlite"},
                {"name": "n2", "role": "backup", "implementation": "sqlite"},
            ]
        });
        let steps: Vec<String> = steps(&plan(4), &status)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            steps,
            vec![
                "add n3 at http://127.0.0.1:9103 (replaces an old backup)",
                "remove c",
                "switch the primary over to n1",
                "remove a",
                "add n4 at http://127.0.0.1:9104 (additional backup)",
            ]
        );
    }

    #[test]
    fn plans_load_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(
            &path,
            "implementation = \"sqlite\"\n[[backends]]\nname = \"n1\"\nurl = \"http://127.0.0.1:9101\"\n",
        )
        .unwrap();
        let p = Plan::load(&path).unwrap();
        assert_eq!(p.backends[0].name, "n1");
        std::fs::write(&path, "implementation = \"sqlite\"\nbackend = []\n").unwrap();
        let e = format!("{:#}", Plan::load(&path).unwrap_err());
        assert!(e.contains("unknown field"), "{e}");
    }
}

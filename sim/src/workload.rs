//! The simulated clients and the operator, and the history they record.
//!
//! Each writer opens its own account, then deposits 1 into it again and again, each deposit with
//! its own `Idempotency-Key`, retried with the same key until it is answered `200`: every writer
//! knows exactly how many deposits were acknowledged. Between deposits it reads the balance of a
//! random account (its own or another writer's), so that reads race with other clients' writes.
//! Clients name accounts by the ids they were given, numbers or (random ids) strings alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::http_client::{Reply, send};
use crate::linearizability::{Action, Operation};
use crate::rng::SplitMix64;

/// The gateway's data and admin ports.
pub(crate) const DATA_PORT: u16 = 8080;
pub(crate) const ADMIN_PORT: u16 = 8081;

/// Patience for one attempt; the gateway's own timeouts are shorter.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every client and the driver share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Account id by writer, as the writer was given it (a number or a random id, as text).
    pub(crate) accounts: Mutex<BTreeMap<usize, String>>,
    /// Operations by account owner (writer index).
    pub(crate) history: Mutex<BTreeMap<usize, Vec<Operation>>>,
    /// Deposits acknowledged with `200`, by writer.
    pub(crate) acknowledged: Mutex<BTreeMap<usize, i64>>,
    /// The deposit each writer has sent and not yet seen acknowledged (a run cut short by a
    /// liveness failure may end with one): when it started.
    pub(crate) pending: Mutex<BTreeMap<usize, Duration>>,
    /// Deposits the gateway answered `409 idempotency_outcome_unknown`, by writer: when each was
    /// sent. The gateway could not tell whether the primary applied them and will not run them
    /// again, so each may or may not be in the balance.
    pub(crate) unknown: Mutex<BTreeMap<usize, Vec<Duration>>>,
    /// Human-readable events in order; their hash is the run's fingerprint.
    pub(crate) trace: Mutex<Vec<String>>,
    /// Things that must never happen, seen by the clients.
    pub(crate) violations: Mutex<Vec<String>>,
    /// Writers that finished their deposits.
    pub(crate) writers_done: AtomicUsize,
    /// Set by the driver once every fault is healed.
    pub(crate) healed: AtomicBool,
    /// Set by the operator once the final liveness write was acknowledged.
    pub(crate) final_write: AtomicBool,
}

impl Shared {
    pub(crate) fn log(&self, event: String) {
        self.trace.lock().push(event);
    }

    fn violation(&self, what: String) {
        self.log(format!("VIOLATION {what}"));
        self.violations.lock().push(what);
    }

    fn record(&self, owner: usize, op: Operation) {
        self.history.lock().entry(owner).or_default().push(op);
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// How a keyed request ended.
enum Answer {
    /// Answered with the expected status.
    Acknowledged(Reply),
    /// `409 idempotency_outcome_unknown`: a final answer. An earlier attempt reached a backend
    /// that may have applied it, nobody could take over, and the gateway will not run it again.
    Unknown,
    /// An answer that must never come (recorded as a violation).
    Refused,
}

/// Sends a state-changing request with `key` until it is answered with `expected`, retrying the
/// same key on anything that says "maybe later" (no answer, 409 in flight, 5xx), and stopping at
/// a final `409 idempotency_outcome_unknown`.
async fn until_acknowledged(
    shared: &Shared,
    who: &str,
    path: &str,
    key: &str,
    body: &str,
    expected: u16,
) -> Answer {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let reply = send(
            "gateway",
            DATA_PORT,
            "POST",
            path,
            &[("idempotency-key", key)],
            body,
            ATTEMPT_TIMEOUT,
        )
        .await;
        match reply {
            Some(r) if r.status == expected => return Answer::Acknowledged(r),
            Some(r)
                if r.status == 409
                    && r.error().as_deref() == Some("idempotency_outcome_unknown") =>
            {
                shared.log(format!(
                    "{:?} {who} {key} attempt {attempt}: outcome unknown",
                    now()
                ));
                return Answer::Unknown;
            }
            Some(r) if r.status == 409 || r.status >= 500 => {
                shared.log(format!(
                    "{:?} {who} {key} attempt {attempt}: {} {}",
                    now(),
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            None => shared.log(format!(
                "{:?} {who} {key} attempt {attempt}: no answer",
                now()
            )),
            Some(r) => {
                shared.violation(format!(
                    "{who}: POST {path} with key {key} answered {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
                return Answer::Refused;
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// The owner of writer `index`'s account.
pub(crate) fn owner(index: usize) -> String {
    format!("client-{index}")
}

/// The `id` of a JSON account body, as text: a number, or a string with random ids.
fn account_id(reply: &Reply) -> Option<String> {
    if let Some(n) = reply.id() {
        return Some(n.to_string());
    }
    let value: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
    Some(value.get("id")?.as_str()?.to_owned())
}

/// Reads one account's balance through the gateway; records the read when it was answered.
async fn read_balance(shared: &Shared, who: &str, owner: usize, id: &str) {
    let invoked = now();
    let reply = send(
        "gateway",
        DATA_PORT,
        "GET",
        &format!("/accounts/{id}"),
        &[],
        "",
        ATTEMPT_TIMEOUT,
    )
    .await;
    let returned = now();
    match reply {
        Some(r) if r.status == 200 => match r.balance() {
            Some(balance) => {
                shared.log(format!("{returned:?} {who} read account {id}: {balance}"));
                shared.record(
                    owner,
                    Operation {
                        invoked,
                        returned: Some(returned),
                        action: Action::Read(balance),
                    },
                );
            }
            None => shared.violation(format!("{who}: GET /accounts/{id} gave no balance")),
        },
        // A failed read changes nothing and says nothing.
        other => shared.log(format!(
            "{returned:?} {who} read account {id}: {:?}",
            other.map(|r| r.status)
        )),
    }
}

/// One writer: opens its account, then `deposits` deposits with reads in between.
pub(crate) async fn writer(
    shared: Arc<Shared>,
    index: usize,
    deposits: usize,
    seed: u64,
) -> turmoil::Result {
    let who = owner(index);
    let mut rng = SplitMix64::new(seed);
    let opened = until_acknowledged(
        &shared,
        &who,
        "/accounts",
        &format!("open-{index}"),
        &format!(r#"{{"owner":"{who}"}}"#),
        201,
    )
    .await;
    let opened = match opened {
        Answer::Acknowledged(r) => account_id(&r),
        Answer::Unknown | Answer::Refused => None,
    };
    let Some(id) = opened else {
        shared.writers_done.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    };
    shared.accounts.lock().insert(index, id.clone());
    shared.log(format!("{:?} {who} opened account {id}", now()));
    for n in 1..=deposits {
        let key = format!("deposit-{index}-{n}");
        let invoked = now();
        shared.pending.lock().insert(index, invoked);
        let reply = until_acknowledged(
            &shared,
            &who,
            &format!("/accounts/{id}/deposit"),
            &key,
            r#"{"amount":1}"#,
            200,
        )
        .await;
        let returned = now();
        let reply = match reply {
            Answer::Acknowledged(reply) => reply,
            Answer::Unknown => {
                shared.pending.lock().remove(&index);
                shared
                    .unknown
                    .lock()
                    .entry(index)
                    .or_default()
                    .push(invoked);
                continue;
            }
            Answer::Refused => break,
        };
        shared.pending.lock().remove(&index);
        let balance = reply.balance();
        shared.log(format!("{returned:?} {who} {key}: balance {balance:?}"));
        *shared.acknowledged.lock().entry(index).or_default() += 1;
        shared.record(
            index,
            Operation {
                invoked,
                returned: Some(returned),
                action: Action::Deposit(balance),
            },
        );
        // A read of a random known account, every other operation on average.
        if rng.below(2) == 0 {
            let known: Vec<(usize, String)> = shared
                .accounts
                .lock()
                .iter()
                .map(|(o, i)| (*o, i.clone()))
                .collect();
            let (owner, account) = &known[rng.below(known.len() as u64) as usize];
            read_balance(&shared, &who, *owner, account).await;
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.below(900))).await;
    }
    shared.writers_done.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// The operator: once the faults are healed, brings every backup back (a plain rejoin first,
/// then a rejoin with reset for what is still out), then makes the final liveness write and
/// reads every account.
pub(crate) async fn operator(
    shared: Arc<Shared>,
    backends: Vec<&'static str>,
    writers: usize,
) -> turmoil::Result {
    while !shared.healed.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Health checks readmit what answers again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for reset in [false, true] {
        for name in &backends {
            let path = if reset {
                format!("/backends/{name}/rejoin?reset=true")
            } else {
                format!("/backends/{name}/rejoin")
            };
            let reply = send(
                "gateway",
                ADMIN_PORT,
                "POST",
                &path,
                &[],
                "",
                Duration::from_secs(60),
            )
            .await;
            shared.log(format!(
                "{:?} operator POST {path}: {:?}",
                now(),
                reply.map(|r| r.status)
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    while shared.writers_done.load(Ordering::SeqCst) < writers {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Liveness: after the heal, a new write must commit.
    let id = shared.accounts.lock().get(&0).cloned();
    if let Some(id) = id {
        let invoked = now();
        let reply = until_acknowledged(
            &shared,
            "operator",
            &format!("/accounts/{id}/deposit"),
            "final-write",
            r#"{"amount":1}"#,
            200,
        )
        .await;
        let returned = now();
        if let Answer::Acknowledged(reply) = reply {
            shared.final_write.store(true, Ordering::SeqCst);
            *shared.acknowledged.lock().entry(0).or_default() += 1;
            shared.record(
                0,
                Operation {
                    invoked,
                    returned: Some(returned),
                    action: Action::Deposit(reply.balance()),
                },
            );
            shared.log(format!("{returned:?} final write acknowledged"));
        }
    }
    let accounts: Vec<(usize, String)> = shared
        .accounts
        .lock()
        .iter()
        .map(|(o, i)| (*o, i.clone()))
        .collect();
    for (owner, id) in accounts {
        read_balance(&shared, "operator", owner, &id).await;
    }
    Ok(())
}

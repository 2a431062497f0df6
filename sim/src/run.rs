//! One seeded run: the hosts, the fault schedule, the driver loop and the checks.
//!
//! Seeds with bit 1 set (2, 3, 6, 7, ...) run the banks with random ids (the demo's
//! `--ids random`, each bank its own key) and the account-opening route declares
//! `mint = ["/id"]`: the gateway must then translate every client id for every copy, across
//! failovers, restarts and replays. The checks compare
//! the copies modulo ids — accounts in creation order, found by owner — and check apart that
//! every id a client holds reaches its own account on every in-sync copy.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockstep::{Environment, Gateway};
use lockstep_backends::{BackendState, Clock};
use lockstep_config::Config;
use lockstep_demo::{Account, Snapshot};
use parking_lot::Mutex;
use tokio::sync::watch;
use turmoil::net::TcpListener;

use crate::bank::{BANK_PORT, Bank, Saved};
use crate::disk::SimDisk;
use crate::linearizability::{Action, Operation, is_linearizable};
use crate::net::{SimConnector, downstream};
use crate::rng::SplitMix64;
use crate::workload::{ADMIN_PORT, DATA_PORT, Shared, operator, owner, writer};

const BACKENDS: [&str; 3] = ["a", "b", "c"];
const WRITERS: usize = 4;
const DEPOSITS_PER_WRITER: usize = 6;
/// Faults start inside this window of simulated time and are all healed at its end.
const CHAOS_START: Duration = Duration::from_secs(2);
const HEAL_AT: Duration = Duration::from_secs(20);
/// A gateway crash waits up to this long after its scheduled moment for a journal write whose
/// fsync is still running, and cuts the power then (see [`SimDisk::arm_power_cut`]), so that the
/// power loss takes something back: with every answered write synced first, that is the only
/// case where the disk can lose anything, and simulated time moving in ticks (with fsyncs much
/// shorter than one) would almost never catch it by chance.
const AIM_GATEWAY_CRASH: Duration = Duration::from_secs(1);
/// A run that has not finished by then has lost liveness.
const SIMULATION_LIMIT: Duration = Duration::from_secs(300);
/// Every bank's state is saved once a simulated second, and the last this many saves are kept:
/// a restart from an old snapshot comes back with one of them.
const SNAPSHOTS: usize = 8;

/// The kinds of fault the driver injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The gateway host crashes with a power loss of its disk (the journal keeps what was
    /// fsynced, loses what was only written: see [`SimDisk`]) and restarts later.
    GatewayCrash,
    /// The backend that is the primary at that moment crashes (its state survives) and restarts.
    PrimaryCrash,
    /// A backup crashes and restarts.
    BackupCrash,
    /// The primary crashes and restarts empty: its state is gone. Like every fault that takes
    /// a copy's state, injected only while another copy the gateway trusts, up and reachable,
    /// holds every acknowledged write (losing the last copy of a write loses it whatever the
    /// gateway does).
    PrimaryRestartEmpty,
    /// The primary crashes and restarts from an old snapshot: its state as it was up to
    /// [`SNAPSHOTS`] seconds earlier.
    PrimaryRestartFromSnapshot,
    /// A backup crashes and restarts empty.
    BackupRestartEmpty,
    /// A backup crashes and restarts from an old snapshot.
    BackupRestartFromSnapshot,
    /// The network between the gateway and the primary drops everything for a while.
    PrimaryPartition,
    /// The network between the gateway and a backup drops everything for a while.
    BackupPartition,
    /// The network between the gateway and a backend holds every message for a while.
    Hold,
}

/// What one run saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// Whether the banks showed random ids (seeds with bit 1 set), which the gateway translated.
    pub random_ids: bool,
    /// A hash of everything that happened, in order: equal for two runs of one seed.
    pub trace_hash: u64,
    pub faults: BTreeMap<FaultKind, usize>,
    /// Client operations checked for linearizability.
    pub operations: usize,
    /// Journal operations written but not yet synced when a gateway crash cut the power (lost),
    /// by kind (`append`, `dispatch`, ...).
    pub lost_journal_records: BTreeMap<&'static str, usize>,
    /// Everything that must never happen, with what it was.
    pub violations: Vec<String>,
    pub simulated: Duration,
    /// The trace itself, for a report.
    pub trace: Vec<String>,
}

/// Simulated wall time for the gateway's sequencing and key expiry.
#[derive(Debug)]
struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + turmoil::since_epoch().unwrap_or_default()
    }
}

/// The gateway's configuration: three demo banks, a view probe so that a rejoin, a re-admission
/// and a promotion check the view, the banks' boot id as their instance identity so that a
/// restart is seen even between two health checks, the demo's reset hook, and every timeout at
/// 1 s or more (pingora's shorter timeouts run on a real-time thread, outside the simulation).
/// With `random_ids`, the id in a new account's answer is declared minted.
fn config(addresses: &[(String, std::net::IpAddr)], random_ids: bool) -> Config {
    let mut toml = String::from(
        r#"
[gateway]
listen = "127.0.0.1:8080"
threads = 1

[admin]
listen = "127.0.0.1:8081"

[journal]
dir = "simulated-journal"
fsync = "always"

[replication]
ack = "all"
dispatch = "sequential"
backup_timeout = "2s"
primary_timeout = "3s"
connect_timeout = "1s"

[health]
path = "/health"
interval = "1s"
timeout = "1s"
unhealthy_after = 2
healthy_after = 2
identity_header = "x-boot-id"
"#,
    );
    if random_ids {
        toml.push_str(
            r#"
[[routes]]
match = "POST /accounts"
kind = "logical"
idempotency = "required"
mint = ["/id"]
"#,
        );
    }
    toml.push_str(
        r#"
[[routes]]
match = "POST /accounts/**"
kind = "logical"
idempotency = "required"

[[verify.probes]]
request = "GET /accounts"
"#,
    );
    for (i, (name, ip)) in addresses.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "backup" };
        toml.push_str(&format!(
            "\n[[backends]]\nname = \"{name}\"\nurl = \"http://{ip}:{BANK_PORT}\"\nrole = \"{role}\"\nreset = {{ request = \"POST /admin/reset\" }}\n"
        ));
    }
    Config::from_toml_str(&toml).expect("the simulation's configuration is valid")
}

/// The gateway host: the real gateway on the simulated clock, network and disk.
async fn gateway_host(
    config: Config,
    journal: Arc<SimDisk>,
    published: Arc<Mutex<Option<Gateway>>>,
) -> turmoil::Result {
    let environment = Environment {
        clock: Arc::new(SimClock),
        journal: Some(journal),
        connector: Some(Arc::new(SimConnector)),
    };
    let gateway = Gateway::with_environment(config, environment)?;
    *published.lock() = Some(gateway.clone());
    // Never sent: the gateway runs until the host crashes.
    let (_stop, stopped) = watch::channel(false);
    let _background = gateway.spawn_background(stopped.clone());
    let admin_listener = TcpListener::bind(("0.0.0.0", ADMIN_PORT)).await?;
    let admin = gateway.admin_app();
    let admin_stopped = stopped.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = admin_listener.accept().await {
            let (app, stopped) = (admin.clone(), admin_stopped.clone());
            tokio::spawn(async move { app.serve_connection(downstream(stream), stopped).await });
        }
    });
    let listener = TcpListener::bind(("0.0.0.0", DATA_PORT)).await?;
    let proxy = gateway.proxy_app();
    loop {
        let (stream, _) = listener.accept().await?;
        let (app, stopped) = (proxy.clone(), stopped.clone());
        tokio::spawn(async move { app.serve_connection(downstream(stream), stopped).await });
    }
}

/// A scheduled change to the world.
#[derive(Debug, Clone)]
enum Step {
    /// A fault that lasts `lasts`, scheduled at `due` (a gateway crash may come a little later:
    /// see [`AIM_GATEWAY_CRASH`]).
    Start {
        kind: FaultKind,
        lasts: Duration,
        due: Duration,
    },
    Bounce(String),
    Repair(String),
    Release(String),
}

/// Runs one seed and checks it.
pub fn run(seed: u64) -> Outcome {
    // Bit 1 of the seed: half the seeds, among them two of the four the determinism check
    // replays (50 and 150).
    let random_ids = seed & 2 != 0;
    let shared = Arc::new(Shared::default());
    shared.log(format!(
        "ids: {}",
        if random_ids { "random" } else { "sequential" }
    ));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(10))
        .simulation_duration(SIMULATION_LIMIT)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .build();
    // The banks' keys come from a stream of their own: the seed's schedule stays what it is.
    let mut keys = SplitMix64::new(seed ^ 0x6964_732d_6b65_7973);
    let banks: Vec<Bank> = BACKENDS
        .iter()
        .map(|n| Bank::new(n, random_ids.then(|| keys.next_u64())))
        .collect();
    for bank in &banks {
        let bank = bank.clone();
        sim.host(bank.name, move || bank.clone().serve());
    }
    let addresses: Vec<(String, std::net::IpAddr)> = BACKENDS
        .iter()
        .map(|n| (n.to_string(), sim.lookup(*n)))
        .collect();
    let config = config(&addresses, random_ids);
    // Outside the host, so that it outlives a crash; its fsync latencies come from a stream of
    // their own, so that the seed's fault schedule is what it was with a journal that never
    // loses anything.
    let journal = Arc::new(SimDisk::new(seed));
    let published: Arc<Mutex<Option<Gateway>>> = Arc::default();
    {
        let (journal, published) = (journal.clone(), published.clone());
        sim.host("gateway", move || {
            gateway_host(config.clone(), journal.clone(), published.clone())
        });
    }
    let mut rng = SplitMix64::new(seed);
    for index in 0..WRITERS {
        let client_seed = rng.next_u64();
        sim.client(
            format!("client-{index}"),
            writer(shared.clone(), index, DEPOSITS_PER_WRITER, client_seed),
        );
    }
    sim.client(
        "operator",
        operator(shared.clone(), BACKENDS.to_vec(), WRITERS),
    );

    // The fault schedule: two to five faults, each starting in the chaos window and lasting 1
    // to 8 s; everything is healed at HEAL_AT.
    let kinds = [
        FaultKind::GatewayCrash,
        FaultKind::PrimaryCrash,
        FaultKind::BackupCrash,
        FaultKind::PrimaryRestartEmpty,
        FaultKind::PrimaryRestartFromSnapshot,
        FaultKind::BackupRestartEmpty,
        FaultKind::BackupRestartFromSnapshot,
        FaultKind::PrimaryPartition,
        FaultKind::BackupPartition,
        FaultKind::Hold,
    ];
    let mut schedule: Vec<(Duration, Step)> = Vec::new();
    for _ in 0..2 + rng.below(4) {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let window = (HEAL_AT - CHAOS_START).as_millis() as u64 - 8_000;
        let at = CHAOS_START + Duration::from_millis(rng.below(window));
        let lasts = Duration::from_millis(1_000 + rng.below(7_000));
        schedule.push((
            at,
            Step::Start {
                kind,
                lasts,
                due: at,
            },
        ));
    }
    let mut faults: BTreeMap<FaultKind, usize> = BTreeMap::new();
    let mut violations = Vec::new();
    // Hosts crashed or links cut now, so that two faults never stack on one target.
    let mut affected: BTreeSet<String> = BTreeSet::new();
    let mut healed = false;
    // The saved states of every bank, oldest first, and when the next save is due.
    let mut saves: Vec<Vec<(Duration, Saved)>> = vec![Vec::new(); banks.len()];
    let mut next_save = Duration::ZERO;
    let mut watch = Watch::default();
    // Copies that lost their state and have not been trusted again since with every
    // acknowledged write.
    let mut lost: BTreeSet<String> = BTreeSet::new();
    loop {
        let now = sim.elapsed();
        // Before any fault of this instant: what the last step did is judged on its own.
        if let Some(gateway) = published.lock().clone() {
            watch.observe(&gateway, &banks, &shared, now, &mut violations);
        }
        if let Some(gateway) = published.lock().clone() {
            let pool = gateway.replicator().pool();
            let primary = pool.primary().name.clone();
            lost.retain(|name| {
                let trusted = *name == primary
                    || pool
                        .get(name)
                        .is_some_and(|b| b.state() == BackendState::InSync);
                !(trusted && missing_acknowledged(bank_named(&banks, name), &shared).is_empty())
            });
        }
        if now >= next_save {
            for (bank, saved) in banks.iter().zip(saves.iter_mut()) {
                saved.push((now, bank.save()));
                if saved.len() > SNAPSHOTS {
                    saved.remove(0);
                }
            }
            next_save = now + Duration::from_secs(1);
        }
        schedule.sort_by_key(|(at, _)| *at);
        while schedule.first().is_some_and(|(at, _)| *at <= now) {
            let (_, step) = schedule.remove(0);
            let primary = published
                .lock()
                .as_ref()
                .map(|g| g.replicator().pool().primary().name.clone())
                .unwrap_or_else(|| BACKENDS[0].to_owned());
            let backups: Vec<&str> = BACKENDS.iter().copied().filter(|b| *b != primary).collect();
            // The copies the gateway trusts: the primary and the in-sync backups.
            let trusted: Vec<String> = published
                .lock()
                .as_ref()
                .map(|g| {
                    let pool = g.replicator().pool();
                    pool.all()
                        .iter()
                        .filter(|b| b.name == primary || b.state() == BackendState::InSync)
                        .map(|b| b.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            match step {
                Step::Start { kind, lasts, due } => {
                    if kind == FaultKind::GatewayCrash && !affected.contains("gateway") {
                        let (written, synced) = journal.watermarks();
                        if written == synced && now < due + AIM_GATEWAY_CRASH {
                            journal.arm_power_cut();
                            let retry = Step::Start { kind, lasts, due };
                            schedule.push((now + Duration::from_millis(1), retry));
                            continue;
                        }
                    }
                    let target = match kind {
                        FaultKind::GatewayCrash => "gateway".to_owned(),
                        FaultKind::PrimaryCrash
                        | FaultKind::PrimaryPartition
                        | FaultKind::PrimaryRestartEmpty
                        | FaultKind::PrimaryRestartFromSnapshot => primary,
                        FaultKind::BackupCrash
                        | FaultKind::BackupPartition
                        | FaultKind::Hold
                        | FaultKind::BackupRestartEmpty
                        | FaultKind::BackupRestartFromSnapshot => {
                            backups[rng.below(backups.len() as u64) as usize].to_owned()
                        }
                    };
                    let loses_state = matches!(
                        kind,
                        FaultKind::PrimaryRestartEmpty
                            | FaultKind::PrimaryRestartFromSnapshot
                            | FaultKind::BackupRestartEmpty
                            | FaultKind::BackupRestartFromSnapshot
                    );
                    // One copy at a time loses its state, and only while another one, trusted by
                    // the gateway, up and reachable, holds every acknowledged write: losing the
                    // last copy of a write loses it whatever the gateway does, and two copies out
                    // of three lost while the gateway is down outvote the good one.
                    let survivor = trusted.iter().any(|name| {
                        *name != target
                            && !affected.contains(name)
                            && missing_acknowledged(bank_named(&banks, name), &shared).is_empty()
                    });
                    let another_lost = lost.iter().any(|name| *name != target);
                    if loses_state && (!survivor || another_lost) {
                        continue;
                    }
                    // Until the gateway has stopped trusting a copy that lost its state, the
                    // other copies stay up: the fault on one of them comes a little later.
                    let unnoticed = lost
                        .iter()
                        .any(|name| *name != target && trusted.contains(name));
                    if unnoticed && kind != FaultKind::GatewayCrash {
                        let later = Step::Start { kind, lasts, due };
                        schedule.push((now + Duration::from_millis(100), later));
                        continue;
                    }
                    if !affected.insert(target.clone()) {
                        continue;
                    }
                    if loses_state {
                        lost.insert(target.clone());
                    }
                    *faults.entry(kind).or_default() += 1;
                    shared.log(format!("{now:?} fault {kind:?} on {target} for {lasts:?}"));
                    let end = (now + lasts).min(HEAL_AT);
                    let undo = match kind {
                        FaultKind::GatewayCrash => {
                            sim.crash(target.as_str());
                            // Every gateway crash is the stronger fault: a power loss, which
                            // also takes back the journal's unsynced writes.
                            let (written, synced) = journal.watermarks();
                            let loss = journal.power_loss();
                            shared.log(format!(
                                "{now:?} power loss: {written} journal records written, {synced} synced, lost {:?}",
                                loss.lost
                            ));
                            Step::Bounce(target)
                        }
                        FaultKind::PrimaryCrash | FaultKind::BackupCrash => {
                            sim.crash(target.as_str());
                            Step::Bounce(target)
                        }
                        FaultKind::PrimaryRestartEmpty | FaultKind::BackupRestartEmpty => {
                            sim.crash(target.as_str());
                            let bank = bank_named(&banks, &target);
                            bank.restore(None);
                            Step::Bounce(target)
                        }
                        FaultKind::PrimaryRestartFromSnapshot
                        | FaultKind::BackupRestartFromSnapshot => {
                            sim.crash(target.as_str());
                            let index = BACKENDS.iter().position(|b| *b == target).unwrap();
                            let saved = &saves[index];
                            let (at, old) = &saved[rng.below(saved.len() as u64) as usize];
                            shared.log(format!(
                                "{now:?} {target} comes back with its state of {at:?}"
                            ));
                            banks[index].restore(Some(old));
                            Step::Bounce(target)
                        }
                        FaultKind::PrimaryPartition | FaultKind::BackupPartition => {
                            sim.partition("gateway", target.as_str());
                            Step::Repair(target)
                        }
                        FaultKind::Hold => {
                            sim.hold("gateway", target.as_str());
                            Step::Release(target)
                        }
                    };
                    schedule.push((end, undo));
                }
                Step::Bounce(host) => {
                    sim.bounce(host.as_str());
                    affected.remove(&host);
                }
                Step::Repair(host) => {
                    sim.repair("gateway", host.as_str());
                    affected.remove(&host);
                }
                Step::Release(host) => {
                    sim.release("gateway", host.as_str());
                    affected.remove(&host);
                }
            }
            shared.log(format!("{now:?} world changed; primary was {}", {
                published
                    .lock()
                    .as_ref()
                    .map(|g| g.replicator().pool().primary().name.clone())
                    .unwrap_or_default()
            }));
        }
        if !healed && now >= HEAL_AT && schedule.is_empty() {
            healed = true;
            shared.healed.store(true, Ordering::SeqCst);
            shared.log(format!("{now:?} healed"));
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                violations.push(format!("the run did not complete: {e}"));
                break;
            }
        }
    }
    let simulated = sim.elapsed();
    drop(sim);

    let gateway = published.lock().clone();
    let operations = check(&shared, &banks, gateway.as_ref(), &mut violations);
    violations.extend(shared.violations.lock().iter().cloned());
    let trace = shared.trace.lock().clone();
    let mut hasher = DefaultHasher::new();
    trace.hash(&mut hasher);
    for bank in &banks {
        bank.applied().hash(&mut hasher);
    }
    Outcome {
        seed,
        random_ids,
        trace_hash: hasher.finish(),
        faults,
        operations,
        lost_journal_records: journal.lost(),
        violations,
        simulated,
        trace,
    }
}

fn bank_named<'a>(banks: &'a [Bank], name: &str) -> &'a Bank {
    banks
        .iter()
        .find(|b| b.name == name)
        .expect("every backend is a bank")
}

/// Writer `index`'s account in `snapshot`, found by its owner (ids differ between copies with
/// random ids); an error when the owner has several, since each writer opens one, once.
fn account_of(snapshot: &Snapshot, index: usize) -> Result<Option<&Account>, String> {
    let owner = owner(index);
    let mut found = snapshot.accounts.iter().filter(|a| a.owner == owner);
    let first = found.next();
    match found.next() {
        None => Ok(first),
        Some(_) => Err(format!("{owner} has {} accounts", 2 + found.count())),
    }
}

/// What a copy's state lacks of the acknowledged writes: accounts whose opening was acknowledged
/// and that it does not hold, or that hold fewer deposits than were acknowledged.
fn missing_acknowledged(bank: &Bank, shared: &Shared) -> Vec<String> {
    let snapshot = bank.snapshot();
    let acknowledged = shared.acknowledged.lock().clone();
    let accounts = shared.accounts.lock().clone();
    let mut missing = Vec::new();
    for (index, id) in &accounts {
        let expected = acknowledged.get(index).copied().unwrap_or(0);
        let balance = match account_of(&snapshot, *index) {
            Ok(account) => account.map(|a| a.balance),
            Err(e) => {
                missing.push(e);
                continue;
            }
        };
        if balance.is_none_or(|b| b < expected) {
            missing.push(format!(
                "account {id} holds {balance:?}, {expected} deposits were acknowledged"
            ));
        }
    }
    missing
}

/// Watches the gateway between two steps: a copy it promotes, or that it takes back in-sync,
/// must hold every write acknowledged so far — the faults that take a copy's state away must
/// never make a copy missing committed writes the primary or a trusted backup.
#[derive(Debug, Default)]
struct Watch {
    /// The gateway instance watched (a restarted gateway is a new one), its primary and the
    /// states of its backups when last seen.
    replicator: Option<Arc<lockstep_backends::Replicator>>,
    primary: String,
    states: BTreeMap<String, BackendState>,
}

impl Watch {
    fn observe(
        &mut self,
        gateway: &Gateway,
        banks: &[Bank],
        shared: &Shared,
        now: Duration,
        violations: &mut Vec<String>,
    ) {
        let replicator = gateway.replicator();
        let pool = replicator.pool();
        let primary = pool.primary().name.clone();
        let states: BTreeMap<String, BackendState> = pool
            .all()
            .iter()
            .map(|b| (b.name.clone(), b.state()))
            .collect();
        let same_gateway = self
            .replicator
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, replicator));
        if same_gateway {
            // The gateway's decisions, in the trace, to read a failing seed by.
            if primary != self.primary {
                shared.log(format!(
                    "{now:?} gateway: primary {} -> {primary}",
                    self.primary
                ));
            }
            for backend in pool.all() {
                let state = backend.state();
                if self.states.get(&backend.name) != Some(&state) {
                    shared.log(format!(
                        "{now:?} gateway: {} is {state}: {}",
                        backend.name,
                        backend.detail()
                    ));
                }
            }
            let mut trusted = Vec::new();
            if primary != self.primary {
                trusted.push((primary.clone(), "promoted"));
            }
            for (name, state) in &states {
                let was = self.states.get(name).copied();
                if *name != primary
                    && *state == BackendState::InSync
                    && was.is_some_and(|w| w != BackendState::InSync)
                {
                    trusted.push((name.clone(), "taken back in-sync"));
                }
            }
            for (name, how) in trusted {
                let missing = missing_acknowledged(bank_named(banks, &name), shared);
                if !missing.is_empty() {
                    let what = format!(
                        "wrong trust: {name} was {how} at {now:?} without acknowledged writes: {}",
                        missing.join("; ")
                    );
                    shared.log(format!("VIOLATION {what}"));
                    violations.push(what);
                }
            }
        }
        self.replicator = Some(replicator.clone());
        self.primary = primary;
        self.states = states;
    }
}

/// The end-of-run checks; returns how many client operations were checked.
fn check(
    shared: &Shared,
    banks: &[Bank],
    gateway: Option<&Gateway>,
    violations: &mut Vec<String>,
) -> usize {
    if !shared.final_write.load(Ordering::SeqCst) {
        violations.push("liveness: the final write after the heal was not acknowledged".into());
    }
    let Some(gateway) = gateway else {
        violations.push("the gateway never started".into());
        return 0;
    };
    let pool = gateway.replicator().pool();
    let primary = pool.primary().name.clone();
    // The copies that must agree: the primary and every backup the gateway holds in-sync.
    let in_sync: Vec<&Bank> = banks
        .iter()
        .filter(|b| {
            b.name == primary
                || pool
                    .get(b.name)
                    .is_some_and(|backend| backend.state() == BackendState::InSync)
        })
        .collect();
    let out: Vec<String> = banks
        .iter()
        .filter(|b| !in_sync.iter().any(|s| s.name == b.name))
        .map(|b| {
            let state = pool.get(b.name).map(|x| x.state().to_string());
            format!("{} ({})", b.name, state.unwrap_or_default())
        })
        .collect();
    if !out.is_empty() {
        violations.push(format!(
            "liveness: after the heal and the rejoins, not in sync: {}",
            out.join(", ")
        ));
    }
    let acknowledged = shared.acknowledged.lock().clone();
    let pending = shared.pending.lock().clone();
    let unknown = shared.unknown.lock().clone();
    let accounts = shared.accounts.lock().clone();
    let reference = in_sync[0];
    for bank in &in_sync {
        let applied = bank.applied();
        // Same requests in the same order on every copy that counts.
        if applied != reference.applied() {
            violations.push(format!(
                "order: {} applied {:?}, {} applied {:?}",
                reference.name,
                reference.applied(),
                bank.name,
                applied
            ));
        }
        // Modulo ids: the accounts in creation order, owners and balances, and the next number.
        if bank.state() != reference.state() {
            violations.push(format!(
                "state: {} and {} differ: {:?} / {:?}",
                reference.name,
                bank.name,
                reference.state(),
                bank.state()
            ));
        }
        // At most once per idempotency key, and in sequence order.
        let mut keys = BTreeSet::new();
        for a in &applied {
            if let Some(key) = &a.key
                && !keys.insert(key.clone())
            {
                violations.push(format!("duplicate: {} applied {key} twice", bank.name));
            }
        }
        if applied.windows(2).any(|w| w[0].seq >= w[1].seq) {
            violations.push(format!(
                "order: {} applied sequence numbers out of order: {:?}",
                bank.name,
                applied.iter().map(|a| a.seq).collect::<Vec<_>>()
            ));
        }
        // Every acknowledged deposit is there, once, in the account the client's id reaches.
        let snapshot = bank.snapshot();
        for (owner, id) in &accounts {
            let expected = acknowledged.get(owner).copied().unwrap_or(0);
            let account = match account_of(&snapshot, *owner) {
                Ok(account) => account,
                Err(e) => {
                    violations.push(format!("duplicate: on {}, {e}", bank.name));
                    continue;
                }
            };
            if let Some(account) = account {
                let local = bank.public_id(account.id);
                let reached = pool
                    .get(bank.name)
                    .and_then(|backend| backend.ids.local(id))
                    .map_or_else(|| id.clone(), |l| l.to_string());
                if reached != local {
                    violations.push(format!(
                        "ids: client-{owner}'s account {id} is {local} on {}, and the gateway sends {reached} there",
                        bank.name
                    ));
                }
            }
            let balance = account.map(|a| a.balance);
            // A deposit still unanswered when the run ended, or answered "outcome unknown", may
            // or may not have been applied.
            let doubtful = i64::from(pending.contains_key(owner))
                + unknown.get(owner).map_or(0, |u| u.len() as i64);
            let allowed = expected..=expected + doubtful;
            if !balance.is_some_and(|b| allowed.contains(&b)) {
                violations.push(format!(
                    "lost or duplicated: account {id} on {} holds {balance:?}, {expected} deposits were acknowledged",
                    bank.name
                ));
            }
        }
    }
    let mut history = shared.history.lock().clone();
    for (owner, invoked) in unknown
        .iter()
        .flat_map(|(o, u)| u.iter().map(move |i| (o, i)))
    {
        history.entry(*owner).or_default().push(Operation {
            invoked: *invoked,
            returned: None,
            action: Action::Deposit(None),
        });
    }
    for (owner, invoked) in &pending {
        history.entry(*owner).or_default().push(Operation {
            invoked: *invoked,
            returned: None,
            action: Action::Deposit(None),
        });
    }
    let mut operations = 0;
    for (owner, ops) in history.iter() {
        operations += ops.len();
        if !is_linearizable(ops) {
            violations.push(format!(
                "linearizability: the history of client-{owner}'s account is not linearizable: {ops:?}"
            ));
        }
    }
    operations
}

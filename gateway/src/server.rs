//! Assembling a gateway: the data listener, the admin listener and the health checker, either
//! inside a pingora `Server` (the binary) or as tasks on the caller's runtime (tests, embedding).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::Arc;

use lockstep_backends::{Clock, HealthChecker, Pool, Replicator, SystemClock};
use lockstep_classifiers::Classifier;
use lockstep_config::FsyncMode;
use lockstep_config::{CompareRule, Config};
use lockstep_journal::{Durability, FileJournal, FileJournalOptions, Journal, JournalError};
use pingora::prelude::background_service;
use pingora::proxy::{HttpProxy, http_proxy_service_with_name};
use pingora::server::configuration::ServerConf;
use pingora::server::{Fds, ListenFds, RunArgs, Server, ShutdownWatch};
use pingora::services::background::BackgroundService;
use pingora::services::listening::Service;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::admin::Admin;
use crate::proxy::GatewayProxy;
use crate::shared::Shared;
use crate::transport::{BackendConnector, PeerTimeouts, PingoraTransport};

/// One gateway's parts, built from a validated config.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    /// What opens connections to backends, for every peer this gateway builds.
    connector: Option<BackendConnector>,
}

/// What a gateway runs on besides its config. The default is the binary's: the system clock,
/// the file journal in `journal.dir`, and the operating system's TCP. A deterministic
/// simulation replaces all three (simulated time, a journal that outlives a simulated crash,
/// the simulated network).
#[derive(Debug, Clone)]
pub struct Environment {
    /// Sequencing time (`Lockstep-Time`) and idempotency-key expiry.
    pub clock: Arc<dyn Clock>,
    /// The journal to use instead of opening the file journal in `journal.dir`.
    pub journal: Option<Arc<dyn Journal>>,
    /// Opens the connections to backends (replication, reads, health checks, hooks) instead of
    /// the operating system.
    pub connector: Option<BackendConnector>,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            clock: Arc::new(SystemClock),
            journal: None,
            connector: None,
        }
    }
}

impl Gateway {
    pub fn new(config: Config) -> Result<Self, StartError> {
        Self::with_environment(config, Environment::default())
    }

    /// A gateway whose sequencing time and key expiry follow `clock` (tests move it by hand).
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        Self::with_environment(
            config,
            Environment {
                clock,
                ..Environment::default()
            },
        )
    }

    /// A gateway on `environment`'s clock, journal and network.
    pub fn with_environment(config: Config, environment: Environment) -> Result<Self, StartError> {
        let Environment {
            clock,
            journal,
            connector,
        } = environment;
        let admin_token = admin_token(&config)?;
        crate::metrics::install();
        let repl = &config.replication;
        let io = repl.primary_timeout.max(repl.backup_timeout);
        let timeouts = PeerTimeouts {
            connect: repl.connect_timeout,
            io,
            connector: connector.clone(),
        };
        let pool = Arc::new(Pool::new(&config.backends));
        let durability = match config.journal.fsync {
            FsyncMode::Always => Durability::Always,
            FsyncMode::Batch => Durability::Batch,
            FsyncMode::Never => Durability::Never,
        };
        let journal: Arc<dyn Journal> = match journal {
            Some(journal) => journal,
            None => {
                let options = FileJournalOptions {
                    segment_bytes: config.journal.segment_size,
                    ..FileJournalOptions::new(durability)
                };
                let journal =
                    FileJournal::open_with(&config.journal.dir, options).map_err(|source| {
                        StartError::Journal {
                            dir: config.journal.dir.display().to_string(),
                            source,
                        }
                    })?;
                Arc::new(journal)
            }
        };
        // The roles and states of the last run apply before anything is served, reads included.
        let topology = block_on(journal.load_topology()).map_err(|source| StartError::Journal {
            dir: config.journal.dir.display().to_string(),
            source,
        })?;
        let transport = Arc::new(
            PingoraTransport::new(timeouts.clone())
                .with_public_url(config.gateway.public_url.clone()),
        );
        let replicator = Replicator::new(pool, journal, transport, repl.clone(), clock);
        if let Some(topology) = &topology {
            replicator.restore(topology);
        }
        // Logical requests wait until the journal is recovered (see `recover`).
        replicator.fence();
        let checkpoints = if config.checkpoint.export.is_some() {
            Some(
                crate::checkpoints::CheckpointStore::open(&config.journal.dir).map_err(|e| {
                    StartError::Journal {
                        dir: config.journal.dir.display().to_string(),
                        source: JournalError::Io(e),
                    }
                })?,
            )
        } else {
            None
        };
        let classifier = Classifier::new(config.routes.clone()).with_default_compare(CompareRule {
            refusals: config.replication.refusals.clone(),
            ..CompareRule::default()
        });
        let read_timeouts = PeerTimeouts {
            connect: repl.connect_timeout,
            io: repl.primary_timeout,
            connector: connector.clone(),
        };
        // A probe reads in each copy's own ids and is compared in the clients': the route its
        // request matches says how values are translated.
        let mut config = config;
        for probe in &mut config.verify.probes {
            let class = classifier.classify(&probe.method, &probe.path, &http::HeaderMap::new());
            probe.compare.translate = classifier.compare_rule(&class).translate.clone();
        }
        replicator.set_probes(config.verify.probes.clone());
        if let Some(learn) = config.noise.learn {
            replicator.learn_noise(match learn {
                lockstep_config::NoiseLearning::Answers(n) => {
                    lockstep_backends::LearnFor::Answers(n)
                }
                lockstep_config::NoiseLearning::Duration(d) => {
                    lockstep_backends::LearnFor::Duration(d)
                }
            });
        }
        let auto_rejoin = config.health.auto_rejoin;
        let shared = Arc::new(Shared {
            config,
            classifier,
            replicator,
            read_timeouts,
            in_flight: Arc::default(),
            admin_token,
            joins: Default::default(),
            checkpoints,
            closing: Default::default(),
            active_requests: Default::default(),
            logical_in_flight: Default::default(),
            read_peers: Default::default(),
        });
        {
            // Each request is translated to a copy's minted ids by its route's rule.
            let weak = Arc::downgrade(&shared);
            shared.replicator.set_translation(Arc::new(move |request| {
                weak.upgrade()
                    .map(|shared| {
                        let classifier = &shared.classifier;
                        let class = classifier.classify(
                            &request.method,
                            &request.uri,
                            &http::HeaderMap::new(),
                        );
                        classifier.compare_rule(&class).translate.clone()
                    })
                    .unwrap_or_default()
            }));
        }
        if auto_rejoin {
            let weak = Arc::downgrade(&shared);
            shared.replicator.set_auto_rejoin(Arc::new(move |name| {
                crate::join::rejoin_in_background(&weak, name)
            }));
        }
        Ok(Gateway { shared, connector })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn replicator(&self) -> &Arc<Replicator> {
        &self.shared.replicator
    }

    fn proxy_service(&self, conf: &Arc<ServerConf>) -> Service<HttpProxy<GatewayProxy>> {
        http_proxy_service_with_name(
            conf,
            GatewayProxy::new(self.shared.clone()),
            "lockstep gateway",
        )
    }

    fn admin_service(&self) -> Service<Admin> {
        let mut admin = Service::new("lockstep admin".into(), Admin::new(self.shared.clone()));
        // Catch-ups (backend add, rejoin) and checkpoints run on the admin listener's runtime:
        // two threads keep a replay from being bound to one core.
        admin.threads = Some(2);
        admin
    }

    fn health_checker(&self) -> HealthChecker {
        let repl = &self.shared.config.replication;
        let health = &self.shared.config.health;
        let timeouts = PeerTimeouts {
            connect: repl.connect_timeout.min(health.timeout),
            io: health.timeout,
            connector: self.connector.clone(),
        };
        HealthChecker::new(
            self.shared.replicator.clone(),
            Arc::new(
                PingoraTransport::new(timeouts)
                    .with_public_url(self.shared.config.gateway.public_url.clone()),
            ),
            health.clone(),
        )
    }

    /// Runs the gateway in a pingora `Server` until SIGINT/SIGTERM (or SIGQUIT, which hands the
    /// listening sockets to a gateway started with `--upgrade`); returns after shutdown.
    pub fn run(self) -> anyhow::Result<()> {
        self.serve(ExitHook::default())
    }

    /// [`Gateway::run`], then `cleanup`, also when the gateway ends the process early (a
    /// graceful stop with nothing in flight).
    pub fn run_then(self, cleanup: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
        let hook = ExitHook::default();
        *hook.0.lock() = Some(Box::new(cleanup));
        let result = self.serve(hook.clone());
        hook.run();
        result
    }

    fn serve(self, on_exit: ExitHook) -> anyhow::Result<()> {
        let config = &self.shared.config;
        for (key, addr) in [
            ("gateway.listen", config.gateway.listen),
            ("admin.listen", config.admin.listen),
        ] {
            // pingora retries a failed bind for 30 s and then gives up silently: check first.
            TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("cannot listen on {key} = {addr}: {e}"))?;
        }
        let mut server = Server::new_with_opt_and_conf(None, server_conf(config));
        server.bootstrap();
        self.run_on(server, on_exit)
    }

    /// Takes over from a running gateway with the same configuration, without refusing a
    /// connection: receives its listening sockets over the upgrade socket (send the running
    /// gateway SIGQUIT), waits until it has finished and released the journal, recovers, and
    /// serves. Connections that arrive meanwhile wait in the sockets' backlog.
    pub fn run_upgrade(config: Config) -> anyhow::Result<()> {
        let conf = server_conf(&config);
        let socket = conf.upgrade_sock.clone();
        let opt = pingora::server::configuration::Opt {
            upgrade: true,
            ..Default::default()
        };
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        info!(%socket, "waiting for the listening sockets of the running gateway; send it SIGQUIT");
        server.bootstrap();
        info!("listening sockets received; waiting for the running gateway to release the journal");
        // The old gateway serves for pingora's 5 s close timeout, then drains for its grace
        // period and stops.
        let patience = std::time::Duration::from_secs(30) + 2 * config.gateway.grace_period;
        let deadline = std::time::Instant::now() + patience;
        let gateway = loop {
            match Gateway::new(config.clone()) {
                Ok(g) => break g,
                Err(StartError::Journal {
                    source: JournalError::InUse { .. },
                    ..
                }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        info!("journal opened; taking over");
        gateway.run_on(server, ExitHook::default())
    }

    fn run_on(self, mut server: Server, on_exit: ExitHook) -> anyhow::Result<()> {
        let config = &self.shared.config;
        let mut proxy = self.proxy_service(&server.configuration);
        proxy.add_tcp(&config.gateway.listen.to_string());
        let mut admin = self.admin_service();
        admin.add_tcp(&config.admin.listen.to_string());
        let health = background_service("health", HealthTask(self.health_checker(), self.clone()));
        server.add_service(proxy);
        server.add_service(admin);
        server.add_service(health);
        if let Some(webhook) = self.webhook_task() {
            server.add_service(background_service("webhook", webhook));
        }
        server.add_service(background_service(
            "exit",
            ExitWhenIdle(self.clone(), on_exit.clone()),
        ));
        // The topology saved in the journal wins over the file: count what is really served.
        let backends = self.shared.replicator.pool().all().len();
        info!(gateway = %config.gateway.listen, admin = %config.admin.listen, backends, "lockstep listening");
        server.run(RunArgs {
            shutdown_signal: Box::new(Signals(self.shared.clone(), on_exit.clone())),
        });
        Ok(())
    }

    /// Starts the gateway on the current tokio runtime, on listeners the caller bound (port 0
    /// works). For tests and embedding.
    pub fn spawn(self, gateway: TcpListener, admin: TcpListener) -> std::io::Result<Running> {
        let fds: ListenFds = Arc::new(parking_lot::Mutex::new(Fds::new()));
        let gateway_addr = adopt(&fds, gateway)?;
        let admin_addr = adopt(&fds, admin)?;
        let (stop, stopped) = watch::channel(false);
        let conf = Arc::new(ServerConf {
            threads: self.shared.config.gateway.threads,
            ..Default::default()
        });

        let mut proxy = self.proxy_service(&conf);
        proxy.add_tcp(&gateway_addr.to_string());
        let mut admin = self.admin_service();
        admin.add_tcp(&admin_addr.to_string());
        let mut tasks = Vec::new();
        for mut svc in [
            Box::new(proxy) as Box<dyn pingora::services::Service>,
            Box::new(admin),
        ] {
            let (fds, stopped) = (fds.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                svc.start_service(Some(fds), stopped, 1).await
            }));
        }
        tasks.extend(self.spawn_background(stopped));
        Ok(Running {
            gateway: gateway_addr,
            admin: admin_addr,
            stop,
            tasks,
            app: self,
        })
    }
}

/// Serving without listeners of the gateway's own, for a caller that accepts the connections
/// itself (a simulated network): the same pingora applications and background tasks that
/// [`Gateway::spawn`] runs.
impl Gateway {
    /// The data listener's application: hand it each connection accepted for the data port.
    pub fn proxy_app(&self) -> ListenerApp {
        let conf = Arc::new(ServerConf {
            threads: self.shared.config.gateway.threads,
            ..Default::default()
        });
        let mut proxy = HttpProxy::new(GatewayProxy::new(self.shared.clone()), conf);
        proxy.handle_init_modules();
        ListenerApp(App::Proxy(Arc::new(proxy)))
    }

    /// The admin listener's application.
    pub fn admin_app(&self) -> ListenerApp {
        ListenerApp(App::Admin(Arc::new(Admin::new(self.shared.clone()))))
    }

    /// Starts, on the current runtime, what runs beside the listeners: the journal recovery
    /// (which opens admission), the health checks, the webhook, key expiry and automatic
    /// checkpoints. They end when `stopped` turns true.
    pub fn spawn_background(&self, stopped: ShutdownWatch) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let recovering = self.clone();
        tasks.push(tokio::spawn(
            async move { recover_logged(&recovering).await },
        ));
        let checker = self.health_checker();
        let stopped_health = stopped.clone();
        tasks.push(tokio::spawn(
            async move { checker.run(stopped_health).await },
        ));
        if let Some(webhook) = self.webhook_task() {
            let stopped_webhook = stopped.clone();
            tasks.push(tokio::spawn(
                async move { webhook.start(stopped_webhook).await },
            ));
        }
        tasks.push(tokio::spawn(expire_keys(self.clone(), stopped.clone())));
        tasks.push(tokio::spawn(auto_checkpoints(self.clone(), stopped)));
        tasks
    }
}

/// One of the gateway's listener applications (see [`Gateway::proxy_app`]).
#[derive(Clone)]
pub struct ListenerApp(App);

#[derive(Clone)]
enum App {
    Proxy(Arc<HttpProxy<GatewayProxy>>),
    Admin(Arc<Admin>),
}

impl std::fmt::Debug for ListenerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            App::Proxy(_) => "proxy",
            App::Admin(_) => "admin",
        };
        f.debug_tuple("ListenerApp").field(&name).finish()
    }
}

impl ListenerApp {
    /// Serves one accepted connection, request after request, until it closes or `shutdown`
    /// turns true: what pingora's listening service does with each connection it accepts.
    pub async fn serve_connection(
        &self,
        stream: pingora::protocols::Stream,
        shutdown: ShutdownWatch,
    ) {
        match &self.0 {
            App::Proxy(app) => Service::handle_event(stream, app.clone(), shutdown).await,
            App::Admin(app) => Service::handle_event(stream, app.clone(), shutdown).await,
        }
    }
}

/// Why a gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the admin token from admin.token_file = {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("admin.token_file = {0} is empty; put the token in it")]
    EmptyTokenFile(String),
    #[error("admin.token_env = {0}: the environment variable is not set or empty")]
    TokenEnv(String),
    #[error("cannot open the journal in journal.dir = {dir}")]
    Journal {
        dir: String,
        source: lockstep_journal::JournalError,
    },
}

async fn recover_logged(gateway: &Gateway) {
    match gateway.recover().await {
        Ok(report) => info!(
            last_seq = report.last_seq,
            resumed = ?report.resumed,
            aborted = ?report.aborted,
            suspects = ?report.suspects,
            primary = %report.primary,
            "journal recovered; admitting requests"
        ),
        // Admission stays closed: writing on top of a history that could not be read back
        // could lose or repeat requests. Reads are still served.
        Err(e) => {
            tracing::error!(error = %e, "journal recovery failed; state-changing requests stay paused until the journal is repaired and the gateway restarted")
        }
    }
}

/// Forgets idempotency keys older than the TTL, periodically, until `shutdown`.
async fn expire_keys(gateway: Gateway, mut shutdown: ShutdownWatch) {
    let ttl = gateway.shared.config.idempotency.ttl;
    let every = (ttl / 10).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let replicator = &gateway.shared.replicator;
        let Some(before) = replicator.clock().now().checked_sub(ttl) else {
            continue;
        };
        match replicator.journal().expire_keys(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "idempotency keys expired"),
            Err(e) => tracing::warn!(error = %e, "could not expire idempotency keys"),
        }
    }
}

/// Ends transactions idle for longer than `[transactions] timeout`.
async fn expire_transactions(gateway: Gateway, mut shutdown: ShutdownWatch) {
    let timeout = gateway.shared.config.transactions.timeout;
    let every = (timeout / 4).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let ended = gateway.shared.replicator.expire_transactions(timeout).await;
        if ended > 0 {
            tracing::info!(ended, "idle transactions ended");
        }
    }
}

/// Takes a checkpoint whenever `[checkpoint] every` entries were journaled since the last one.
async fn auto_checkpoints(gateway: Gateway, mut shutdown: ShutdownWatch) {
    let shared = &gateway.shared;
    let every = shared.config.checkpoint.every;
    let Some(store) = shared.checkpoints.as_ref().filter(|_| every > 0) else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let last = match store.latest() {
            Ok(latest) => latest.map_or(0, |c| c.seq),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the checkpoints");
                continue;
            }
        };
        if shared.replicator.committed_seq().saturating_sub(last) < every {
            continue;
        }
        match crate::join::checkpoint(shared).await {
            Ok((info, pause_ms)) => {
                tracing::info!(
                    seq = info.seq,
                    bytes = info.bytes,
                    pause_ms,
                    "automatic checkpoint taken"
                )
            }
            Err(e) => tracing::warn!(error = %e, "the automatic checkpoint failed"),
        }
    }
}

/// pingora's signals (SIGQUIT: hand over to an upgraded gateway; SIGTERM: graceful stop;
/// SIGINT: fast stop), and on the graceful ones the gateway starts closing client connections
/// after their current response, so that none is still open, idle, when the process goes away.
struct Signals(Arc<Shared>, ExitHook);

#[async_trait::async_trait]
impl pingora::server::ShutdownSignalWatch for Signals {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        use pingora::server::ShutdownSignal;
        use tokio::signal::unix::{SignalKind, signal};
        let mut quit = signal(SignalKind::quit()).expect("signal handlers install");
        let mut term = signal(SignalKind::terminate()).expect("signal handlers install");
        let mut int = signal(SignalKind::interrupt()).expect("signal handlers install");
        let received = tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        };
        info!(signal = ?received, "stopping");
        if matches!(received, ShutdownSignal::FastShutdown) {
            // Ctrl-C: no grace. pingora's own fast stop can leave its accept loops spinning on a
            // runtime that is shutting down, so the process ends here, with the journal synced
            // (requests in flight are settled by the next start's recovery, as after a crash).
            let journal = self.0.replicator.journal().clone();
            let synced = tokio::time::timeout(std::time::Duration::from_secs(1), journal.sync());
            if !matches!(synced.await, Ok(Ok(()))) {
                tracing::warn!("the journal could not be synced before exiting");
            }
            self.1.run();
            std::process::exit(0);
        }
        self.0
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        received
    }
}

/// pingora's server settings for `config`. The upgrade socket lives next to the journal, so a
/// gateway started with `--upgrade` on the same configuration finds the running one.
fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
        threads: config.gateway.threads,
        // One single-threaded runtime per worker thread instead of one work-stealing runtime: a
        // connection's tasks stay on the thread that accepted it, so waking one costs no
        // cross-thread hand-off (a fifth more reads per second on a 2-core machine; see
        // docs/benchmarks.md).
        work_stealing: false,
        grace_period_seconds: Some(config.gateway.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: config
            .journal
            .dir
            .join("upgrade.sock")
            .to_string_lossy()
            .into_owned(),
        ..ServerConf::default()
    }
}

/// Runs a start-up future to completion in place. Only for journal reads, which never wait on a
/// runtime (they read the journal's in-memory index and its files), so this works inside or
/// outside a tokio runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

impl Gateway {
    /// Finishes what the journal holds unfinished, then opens admission. Reads are served
    /// meanwhile; logical requests wait.
    pub async fn recover(
        &self,
    ) -> Result<lockstep_backends::RecoveryReport, lockstep_journal::JournalError> {
        let classifier = &self.shared.classifier;
        let compare = |request: &lockstep_journal::RequestRecord| {
            let class = classifier.classify(&request.method, &request.uri, &http::HeaderMap::new());
            classifier.compare_rule(&class).clone()
        };
        // Admin requests that fence and unfence (verify, checkpoint, rejoin, promote...) wait until
        // admission opens here: their unfence would admit requests in the middle of the recovery.
        let _one_change = self.shared.replicator.hold_topology().await;
        let ids = self.shared.replicator.restore_ids().await?;
        if ids > 0 {
            tracing::info!(pairs = ids, "restored the copies' minted identifiers");
        }
        let report = self
            .shared
            .replicator
            .recover(&compare, &self.shared.config.verify.probes)
            .await?;
        self.verify_backups_at_start().await;
        self.shared.replicator.unfence();
        Ok(report)
    }

    /// With view probes configured, a backup that starts out in-sync must show the primary's
    /// view (one that does not is marked diverged before it can receive a request), unless the
    /// backups outvote the primary (see [`lockstep_backends::Replicator::verify_at_start`]).
    async fn verify_backups_at_start(&self) {
        self.shared
            .replicator
            .verify_at_start(&self.shared.config.verify.probes)
            .await;
    }
}

fn admin_token(config: &Config) -> Result<Option<String>, StartError> {
    if let Some(path) = &config.admin.token_file {
        let text = std::fs::read_to_string(path).map_err(|source| StartError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(StartError::EmptyTokenFile(path.display().to_string()));
        }
        return Ok(Some(token));
    }
    if let Some(var) = &config.admin.token_env {
        return match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_owned())),
            _ => Err(StartError::TokenEnv(var.clone())),
        };
    }
    Ok(None)
}

/// Posts topology events to the configured webhook.
struct WebhookTask {
    events: tokio::sync::broadcast::Receiver<lockstep_backends::TopologyEvent>,
    config: lockstep_config::EventsConfig,
    url: url::Url,
}

#[async_trait::async_trait]
impl BackgroundService for WebhookTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let events = self.events.resubscribe();
        let run = crate::events::run_webhook(
            events,
            self.url.clone(),
            self.config.webhook_timeout,
            self.config.webhook_retries,
        );
        tokio::select! {
            _ = run => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl Gateway {
    fn webhook_task(&self) -> Option<WebhookTask> {
        let config = self.shared.config.events.clone();
        let url = config.webhook.clone()?;
        Some(WebhookTask {
            events: self.shared.replicator.events().subscribe(),
            config,
            url,
        })
    }
}

fn adopt(fds: &ListenFds, listener: TcpListener) -> std::io::Result<SocketAddr> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    fds.lock().add(addr.to_string(), listener.into_raw_fd());
    Ok(addr)
}

/// Once a graceful stop has begun (the listeners no longer accept), ends the process as soon as
/// no request is in flight, with the journal synced: pingora itself would wait out the whole
/// grace period, holding the journal's lock, even when idle.
struct ExitWhenIdle(Gateway, ExitHook);

/// What to do before the process ends (the demo stops its backends).
#[derive(Clone, Default)]
struct ExitHook(Arc<parking_lot::Mutex<Option<Cleanup>>>);

type Cleanup = Box<dyn FnOnce() + Send>;

impl ExitHook {
    fn run(&self) {
        if let Some(hook) = self.0.lock().take() {
            hook();
        }
    }
}

/// How long the gateway must stay idle before it exits: covers a connection accepted just
/// before the listeners closed whose request is still arriving.
const IDLE_BEFORE_EXIT: std::time::Duration = std::time::Duration::from_millis(50);

#[async_trait::async_trait]
impl BackgroundService for ExitWhenIdle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.wait_for(|stopping| *stopping).await.is_err() {
            return;
        }
        let active = &self.0.shared.active_requests;
        let mut idle_since: Option<std::time::Instant> = None;
        loop {
            if active.load(std::sync::atomic::Ordering::Acquire) == 0 {
                let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= IDLE_BEFORE_EXIT {
                    break;
                }
            } else {
                idle_since = None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if let Err(e) = self.0.shared.replicator.journal().sync().await {
            tracing::warn!(error = %e, "the journal could not be synced before exiting");
        }
        info!("no request in flight; stopped");
        self.1.run();
        std::process::exit(0);
    }
}

/// Recovers the journal, then runs the health checks, on one background runtime.
struct HealthTask(HealthChecker, Gateway);

#[async_trait::async_trait]
impl BackgroundService for HealthTask {
    async fn start(&self, shutdown: ShutdownWatch) {
        recover_logged(&self.1).await;
        tokio::spawn(expire_keys(self.1.clone(), shutdown.clone()));
        tokio::spawn(auto_checkpoints(self.1.clone(), shutdown.clone()));
        tokio::spawn(expire_transactions(self.1.clone(), shutdown.clone()));
        tokio::spawn(crate::metrics::count_events(
            self.1.shared.replicator.events().subscribe(),
            shutdown.clone(),
        ));
        self.0.run(shutdown).await;
    }
}

/// A gateway started with [`Gateway::spawn`].
#[derive(Debug)]
pub struct Running {
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    app: Gateway,
}

impl Running {
    pub fn app(&self) -> &Gateway {
        &self.app
    }

    /// Stops accepting, lets the services end, and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

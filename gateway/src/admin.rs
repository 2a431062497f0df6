//! The admin listener: status, topology changes (promote, rejoin), and the event stream. Every
//! answer is JSON, errors are `{"error", "detail"}`; mutations are POST or DELETE only; when a
//! token is configured every request must carry it as a bearer token.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use lockstep_backends::{
    CheckpointError, JoinError, JoinProgress, MembershipError, ProbeReport, SwitchoverError,
};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::events::{EventFrames, stream_header};
use crate::join::{AddError, AddRequest};
use crate::shared::{ActiveRequest, Shared};

/// The dashboard: one self-contained page.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Largest admin request body read.
const MAX_ADMIN_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Admin { shared }
    }
}

/// One admin answer.
struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).expect("admin replies serialize");
        body.push(b'\n');
        Reply {
            status,
            body,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            body: body.into(),
            content_type,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, error: &str, detail: impl Into<String>) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            detail: String,
        }
        Reply::json(
            status,
            &Body {
                error,
                detail: detail.into(),
            },
        )
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

#[async_trait]
impl HttpServerApp for Admin {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            _ => return None,
        }
        let active = ActiveRequest::new(&self.shared);
        let header = session.req_header();
        let method = header.method.as_str().to_owned();
        let path = header.uri.path().to_owned();
        let query = header.uri.query().unwrap_or("").to_owned();
        if path == "/" && matches!(method.as_str(), "GET" | "HEAD") {
            // The dashboard page itself holds no data (it asks for the token, then reads the
            // API like any client), so it is served without one.
            let reply = Reply::text(200, "text/html; charset=utf-8", DASHBOARD)
                .with_header("Cache-Control", "no-store");
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
            write_reply(&mut session, reply).await;
        } else if let Some(reply) = self.authorize(&session) {
            // Checked before the body is read: without the token nothing is buffered, and the
            // unread body means the connection cannot be reused.
            session.set_keepalive(None);
            write_reply(&mut session, reply).await;
            return None;
        } else if path == "/events" && method == "GET" {
            // A stream lasts until the client leaves: it does not hold a stop back.
            drop(active);
            self.stream_events(&mut session, shutdown.clone()).await;
            return None;
        } else if path == "/events" && method == "HEAD" {
            let reply = Reply::text(200, "text/event-stream", Vec::new())
                .with_header("Cache-Control", "no-cache");
            write_reply(&mut session, reply).await;
        } else {
            let body = match read_body(&mut session).await {
                Ok(b) => b,
                Err(reply) => {
                    session.set_keepalive(None);
                    write_reply(&mut session, reply).await;
                    return None;
                }
            };
            let reply = self.route(&method, &path, &query, &body).await;
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
            write_reply(&mut session, reply).await;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        drop(active);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
            _ => None,
        }
    }
}

impl Admin {
    /// `None` when the request may proceed.
    fn authorize(&self, session: &ServerSession) -> Option<Reply> {
        let expected = self.shared.admin_token.as_deref()?;
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            None
        } else {
            Some(
                Reply::error(
                    401,
                    "unauthorized",
                    "send the admin token as `Authorization: Bearer TOKEN`",
                )
                .with_header("WWW-Authenticate", "Bearer realm=\"lockstep admin\""),
            )
        }
    }

    async fn route(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Reply {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET" | "HEAD", ["status"]) => Reply::json(200, &self.status()),
            ("GET" | "HEAD", ["backends"]) => {
                Reply::json(200, &self.shared.replicator.status().backends)
            }
            ("POST", ["backends"]) => self.add(body).await,
            ("DELETE", ["backends", name]) => self.remove(name).await,
            ("POST", ["backends", name, "promote"]) => self.promote(name).await,
            ("POST", ["backends", name, "rejoin"]) => {
                self.rejoin(name, query_flag(query, "reset")).await
            }
            ("GET" | "HEAD", ["verify"]) => self.verify(&query_values(query, "backend")).await,
            ("GET" | "HEAD", ["checkpoints"]) => self.checkpoints(),
            ("GET" | "HEAD", ["metrics"]) => Reply::text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::metrics::render(&self.shared),
            ),
            ("POST", ["checkpoints"]) => self.take_checkpoint().await,
            ("GET" | "HEAD", ["noise"]) => match self.shared.replicator.noise_report() {
                Some(report) => Reply::json(200, &report),
                None => Reply::error(
                    409,
                    "not_learned",
                    "the noise finder has not run; start it with POST /noise/learn?answers=N or ?for=DURATION (lockstep noise --learn N)",
                ),
            },
            ("POST", ["noise", "learn"]) => self.learn_noise(query),
            ("DELETE", ["noise", "learn"]) => {
                self.shared.replicator.stop_learning();
                match self.shared.replicator.noise_report() {
                    Some(report) => Reply::json(200, &report),
                    None => Reply::error(409, "not_learned", "the noise finder has not run"),
                }
            }
            (_, ["noise"]) => Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: use GET"),
            )
            .with_header("Allow", "GET, HEAD"),
            (_, ["noise", "learn"]) => Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: POST starts learning, DELETE stops it"),
            )
            .with_header("Allow", "POST, DELETE"),
            (_, ["status" | "events" | "verify" | "metrics"]) => Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: use GET"),
            )
            .with_header("Allow", "GET, HEAD"),
            (_, ["backends" | "checkpoints"]) => Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: use GET to list, POST to add"),
            )
            .with_header("Allow", "GET, HEAD, POST"),
            (_, ["backends", _]) => Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: a backend is removed with DELETE"),
            )
            .with_header("Allow", "DELETE"),
            (_, ["backends", _, "promote" | "rejoin"]) => Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: changes are made with POST"),
            )
            .with_header("Allow", "POST"),
            _ => Reply::error(
                404,
                "not_found",
                format!(
                    "{path} is not an admin endpoint; see GET / (dashboard), GET /status, GET /events, GET /metrics, GET|POST /backends, DELETE /backends/NAME, POST /backends/NAME/promote, POST /backends/NAME/rejoin, GET /verify, GET|POST /checkpoints, GET /noise, POST|DELETE /noise/learn"
                ),
            ),
        }
    }

    async fn add(&self, body: &[u8]) -> Reply {
        let request: AddRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return Reply::error(
                    400,
                    "bad_request",
                    format!(
                        "the body must be JSON like {{\"name\": \"d\", \"url\": \"http://127.0.0.1:9004\", \"implementation\": \"v2\"}}: {e}"
                    ),
                );
            }
        };
        let name = request.name.clone();
        let (progress, watching) = watch::channel(JoinProgress::default());
        self.shared.joins.lock().insert(name.clone(), watching);
        let result = crate::join::add(&self.shared, &request, &progress).await;
        if matches!(result, Err(AddError::Membership(_))) {
            // Nothing was added: no progress to keep.
            self.shared.joins.lock().remove(&name);
        }
        join_reply(result, "cannot_join")
    }

    async fn remove(&self, name: &str) -> Reply {
        match self.shared.replicator.remove_backend(name).await {
            Ok(b) => {
                self.shared.joins.lock().remove(name);
                Reply::json(
                    200,
                    &serde_json::json!({
                        "removed": b.name,
                        "implementation": b.implementation,
                        "url": b.url.as_str(),
                        "acked_seq": b.acked_seq(),
                    }),
                )
            }
            Err(e) => membership_reply(&e),
        }
    }

    async fn verify(&self, names: &[String]) -> Reply {
        let r = &self.shared.replicator;
        let probes = &self.shared.config.verify.probes;
        if probes.is_empty() {
            return Reply::error(
                409,
                "no_probes",
                "no view probes are configured; add [[verify.probes]] request = \"GET /path\" entries that read the service's state",
            );
        }
        let primary = r.pool().primary();
        let backends = if names.is_empty() {
            r.pool().backups()
        } else {
            let mut chosen = Vec::new();
            for name in names {
                match r.pool().get(name) {
                    Some(b) if b.name == primary.name => {
                        return Reply::error(
                            400,
                            "bad_request",
                            format!("{name} is the primary: the others are compared with it"),
                        );
                    }
                    Some(b) => chosen.push(b),
                    None => {
                        return Reply::error(
                            404,
                            "unknown_backend",
                            format!("there is no backend named {name}"),
                        );
                    }
                }
            }
            chosen
        };
        let (results, pause) = r.verify_views(&backends, probes, 20).await;
        #[derive(Serialize)]
        struct One {
            name: String,
            implementation: String,
            state: String,
            equal: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<String>,
            probes: Vec<ProbeReport>,
            differences: Vec<serde_json::Value>,
        }
        let mut all_equal = true;
        let reports: Vec<One> = results
            .into_iter()
            .map(|(b, result)| {
                let (probes, error) = match result {
                    Ok(p) => (p, None),
                    Err(e) => (Vec::new(), Some(e)),
                };
                let differences: Vec<serde_json::Value> = probes
                    .iter()
                    .flat_map(|p| {
                        p.differences
                            .iter()
                            .map(|d| serde_json::json!({ "probe": p.probe, "difference": d }))
                    })
                    .collect();
                let equal = error.is_none() && differences.is_empty();
                all_equal &= equal;
                One {
                    name: b.name.clone(),
                    implementation: b.implementation.clone(),
                    state: b.state().to_string(),
                    equal,
                    error,
                    probes,
                    differences,
                }
            })
            .collect();
        Reply::json(
            200,
            &serde_json::json!({
                "equal": all_equal,
                "primary": primary.name,
                "implementation": primary.implementation,
                "pause_ms": pause.as_secs_f64() * 1000.0,
                "backends": reports,
            }),
        )
    }

    fn checkpoints(&self) -> Reply {
        let Some(store) = &self.shared.checkpoints else {
            return Reply::json(200, &serde_json::json!([]));
        };
        match store.list() {
            Ok(list) => Reply::json(200, &list),
            Err(e) => Reply::error(500, "checkpoint_store", e.to_string()),
        }
    }

    async fn take_checkpoint(&self) -> Reply {
        match crate::join::checkpoint(&self.shared).await {
            Ok((info, pause_ms)) => {
                let mut body = serde_json::to_value(&info).expect("serializes");
                body["pause_ms"] = pause_ms.into();
                body["first_seq"] = self.shared.replicator.journal().first_seq().into();
                Reply::json(200, &body)
            }
            Err(e) => add_error_reply(&e, "cannot_join"),
        }
    }

    /// `POST /noise/learn?answers=N` or `?for=DURATION`.
    fn learn_noise(&self, query: &str) -> Reply {
        let answers = query_values(query, "answers");
        let during = query_values(query, "for");
        let until = match (answers.as_slice(), during.as_slice()) {
            ([n], []) => match n.parse::<u64>() {
                Ok(n) if n > 0 => lockstep_backends::LearnFor::Answers(n),
                _ => {
                    return Reply::error(
                        400,
                        "bad_request",
                        format!("answers={n}: write a count above 0"),
                    );
                }
            },
            ([], [d]) => match humantime::parse_duration(d) {
                Ok(d) if !d.is_zero() => lockstep_backends::LearnFor::Duration(d),
                _ => {
                    return Reply::error(
                        400,
                        "bad_request",
                        format!("for={d}: write a duration like 10m or 90s"),
                    );
                }
            },
            _ => {
                return Reply::error(
                    400,
                    "bad_request",
                    "give exactly one of answers=N (compared backup answers) or for=DURATION (like 10m)",
                );
            }
        };
        self.shared.replicator.learn_noise(until);
        Reply::json(
            200,
            &self
                .shared
                .replicator
                .noise_report()
                .expect("learning just started"),
        )
    }

    fn status(&self) -> serde_json::Value {
        let mut status =
            serde_json::to_value(self.shared.replicator.status()).expect("status serializes");
        let mut joins: Vec<JoinProgress> = self
            .shared
            .joins
            .lock()
            .values()
            .map(|p| p.borrow().clone())
            .filter(|p| !p.backend.is_empty())
            .collect();
        joins.sort_by(|a, b| a.backend.cmp(&b.backend));
        status["joins"] = serde_json::to_value(joins).expect("progress serializes");
        if self.shared.replicator.learning_noise() {
            status["learning_noise"] = true.into();
        }
        status
    }

    async fn promote(&self, name: &str) -> Reply {
        match self.shared.replicator.promote(name).await {
            Ok(pause) => Reply::json(
                200,
                &serde_json::json!({ "primary": name, "pause_ms": pause.as_secs_f64() * 1000.0 }),
            ),
            Err(e @ SwitchoverError::UnknownBackend(_)) => {
                Reply::error(404, "unknown_backend", e.to_string())
            }
            Err(e) => Reply::error(409, "cannot_promote", e.to_string()),
        }
    }

    async fn rejoin(&self, name: &str, reset: bool) -> Reply {
        let (progress, watching) = watch::channel(JoinProgress::default());
        self.shared.joins.lock().insert(name.to_owned(), watching);
        let result = crate::join::rejoin(&self.shared, name, reset, &progress).await;
        if progress.borrow().backend.is_empty() {
            // Refused before the catch-up started: keep the last real one (if any) out of it.
            let mut joins = self.shared.joins.lock();
            if joins
                .get(name)
                .is_some_and(|w| w.borrow().backend.is_empty())
            {
                joins.remove(name);
            }
        }
        join_reply(result, "cannot_rejoin")
    }

    /// Server-Sent Events until the client leaves or the gateway stops.
    async fn stream_events(&self, session: &mut ServerSession, mut shutdown: ShutdownWatch) {
        let mut frames = EventFrames::new(&self.shared.replicator);
        let Some(header) = stream_header(None) else {
            return;
        };
        session.set_keepalive(None);
        if session
            .write_response_header(Box::new(header))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let frame = tokio::select! {
                f = frames.next() => match f {
                    Some(f) => f,
                    None => return,
                },
                _ = shutdown.changed() => {
                    // End the chunked body properly, so clients see a closed stream, not an
                    // error, and reconnect (to the next gateway).
                    let _ = session.write_response_body(Bytes::new(), true).await;
                    return;
                }
            };
            if session.write_response_body(frame, false).await.is_err() {
                return;
            }
        }
    }
}

/// `refused`: the error code of a join that could not run or failed (`cannot_join` for an add,
/// `cannot_rejoin` for a rejoin).
fn join_reply(result: Result<lockstep_backends::JoinReport, AddError>, refused: &str) -> Reply {
    match result {
        Ok(report) => Reply::json(200, &report),
        Err(e) => add_error_reply(&e, refused),
    }
}

fn add_error_reply(e: &AddError, refused: &str) -> Reply {
    match e {
        AddError::Join(JoinError::UnknownBackend(_)) => {
            Reply::error(404, "unknown_backend", e.to_string())
        }
        AddError::Join(JoinError::Diverged { .. } | JoinError::ViewsDiffer { .. }) => {
            Reply::error(409, "diverged", e.to_string())
        }
        AddError::Join(_) => Reply::error(409, refused, e.to_string()),
        AddError::Membership(m) => membership_reply(m),
        AddError::Checkpoint(CheckpointError::NotConfigured) => {
            Reply::error(409, "not_configured", e.to_string())
        }
        AddError::Checkpoint(_) => Reply::error(502, "checkpoint_failed", e.to_string()),
        AddError::Store(_) => Reply::error(500, "checkpoint_store", e.to_string()),
    }
}

fn membership_reply(e: &MembershipError) -> Reply {
    match e {
        MembershipError::UnknownBackend(_) => Reply::error(404, "unknown_backend", e.to_string()),
        MembershipError::BadName(_) | MembershipError::BadUrl { .. } => {
            Reply::error(400, "bad_request", e.to_string())
        }
        MembershipError::Journal(_) => Reply::error(500, "journal", e.to_string()),
        MembershipError::IsPrimary(_)
        | MembershipError::NameTaken(_)
        | MembershipError::UrlTaken { .. } => Reply::error(409, "conflict", e.to_string()),
    }
}

/// Every value of `name` in the query (`backend=a&backend=b`, or `backend=a,b`).
fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == name)
        .flat_map(|(_, v)| v.split(','))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn query_flag(query: &str, name: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        k == name && matches!(v, "" | "1" | "true" | "yes")
    })
}

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Reply> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ADMIN_BODY {
                    return Err(Reply::error(
                        413,
                        "body_too_large",
                        "admin request bodies are limited to 1 MiB",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(Reply::error(
                    400,
                    "bad_request",
                    format!("could not read the body: {e}"),
                ));
            }
        }
    }
}

async fn write_reply(session: &mut ServerSession, reply: Reply) {
    let Ok(mut header) = ResponseHeader::build(reply.status, Some(3 + reply.headers.len())) else {
        return;
    };
    let _ = header.insert_header("Content-Type", reply.content_type);
    let _ = header.insert_header("Content-Length", reply.body.len().to_string());
    for (n, v) in reply.headers {
        let _ = header.insert_header(n, v);
    }
    if session
        .write_response_header(Box::new(header))
        .await
        .is_ok()
        && !reply.body.is_empty()
    {
        let _ = session
            .write_response_body(Bytes::from(reply.body), true)
            .await;
    }
}

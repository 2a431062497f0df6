//! The admin listener: status, topology changes (promote, rejoin), and the event stream. Every
//! answer is JSON, errors are `{"error", "detail"}`; mutations are POST or DELETE only; when a
//! token is configured every request must carry it as a bearer token.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use lockstep_backends::{JoinError, JoinProgress, SwitchoverError};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::events::{EventFrames, stream_header};
use crate::shared::Shared;

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
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).expect("admin replies serialize");
        body.push(b'\n');
        Reply {
            status,
            body,
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
        let body = match read_body(&mut session).await {
            Ok(b) => b,
            Err(reply) => {
                session.set_keepalive(None);
                write_reply(&mut session, reply).await;
                return None;
            }
        };
        let header = session.req_header();
        let method = header.method.as_str().to_owned();
        let path = header.uri.path().to_owned();
        let query = header.uri.query().unwrap_or("").to_owned();
        if let Some(reply) = self.authorize(&session) {
            write_reply(&mut session, reply).await;
        } else if path == "/events" && method == "GET" {
            self.stream_events(&mut session, shutdown.clone()).await;
            return None;
        } else {
            let reply = self.route(&method, &path, &query, &body).await;
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
            write_reply(&mut session, reply).await;
        }
        let settings = HttpPersistentSettings::for_session(&session);
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

    async fn route(&self, method: &str, path: &str, query: &str, _body: &[u8]) -> Reply {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET" | "HEAD", ["status"]) => Reply::json(200, &self.status()),
            ("GET" | "HEAD", ["backends"]) => {
                Reply::json(200, &self.shared.replicator.status().backends)
            }
            ("POST", ["backends", name, "promote"]) => self.promote(name).await,
            ("POST", ["backends", name, "rejoin"]) => {
                self.rejoin(name, query_flag(query, "reset")).await
            }
            (_, ["status" | "backends" | "events"]) => Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: use GET"),
            )
            .with_header("Allow", "GET, HEAD"),
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
                    "{path} is not an admin endpoint; see GET /status, GET /events, POST /backends/NAME/promote, POST /backends/NAME/rejoin"
                ),
            ),
        }
    }

    fn status(&self) -> serde_json::Value {
        let mut status =
            serde_json::to_value(self.shared.replicator.status()).expect("status serializes");
        let joins: Vec<JoinProgress> = self
            .shared
            .joins
            .lock()
            .values()
            .map(|p| p.borrow().clone())
            .collect();
        status["joins"] = serde_json::to_value(joins).expect("progress serializes");
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
        self.shared.joins.lock().remove(name);
        match result {
            Ok(report) => Reply::json(200, &report),
            Err(e @ JoinError::UnknownBackend(_)) => {
                Reply::error(404, "unknown_backend", e.to_string())
            }
            Err(e @ (JoinError::Diverged { .. } | JoinError::ViewsDiffer { .. })) => {
                Reply::error(409, "diverged", e.to_string())
            }
            Err(e) => Reply::error(409, "cannot_rejoin", e.to_string()),
        }
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
                _ = shutdown.changed() => return,
            };
            if session.write_response_body(frame, false).await.is_err() {
                return;
            }
        }
    }
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
    let _ = header.insert_header("Content-Type", "application/json");
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

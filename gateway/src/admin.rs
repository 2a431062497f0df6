//! The admin listener: status now; metrics, events and topology changes come later. Every
//! answer is JSON; errors are `{"error", "detail"}`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Serialize;

use crate::shared::Shared;

#[derive(Debug, Clone)]
pub(crate) struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Admin { shared }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: String,
}

fn json(status: u16, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .expect("static response parts are valid")
}

fn error(status: u16, error: &str, detail: String) -> Response<Vec<u8>> {
    json(
        status,
        serde_json::to_vec(&ErrorBody { error, detail }).expect("strings serialize"),
    )
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let _ = session.drain_request_body().await;
        let header = session.req_header();
        let method = header.method.as_str().to_owned();
        let path = header.uri.path().to_owned();
        match (method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/status") => {
                let status = self.shared.replicator.status();
                json(
                    200,
                    serde_json::to_vec_pretty(&status).expect("status serializes"),
                )
            }
            (_, "/status") => {
                let mut r = error(
                    405,
                    "method_not_allowed",
                    format!("{method} {path}: use GET"),
                );
                r.headers_mut()
                    .insert("allow", http::HeaderValue::from_static("GET, HEAD"));
                r
            }
            _ => error(
                404,
                "not_found",
                format!("{path} is not an admin endpoint; try GET /status"),
            ),
        }
    }
}

//! `--noise`: answers that carry what real services put in theirs and that differ from copy to
//! copy although the copies agree — the instance's own address, the moment, a request id it
//! minted, its own validators — so that the gateway's comparison is exercised as in front of a
//! real service.
//!
//! Every answer gains `X-Served-By` (this instance's `http://addr`), `X-Generated-At` (now, RFC
//! 3339 to the microsecond: a backup answers after the primary, and two copies within one
//! millisecond would otherwise agree by chance), `X-Trace-Id` (a UUID minted per request) and an
//! `ETag` of its own; a `201 Created` account also gets an absolute `Location` built from this
//! instance's address and the account's id (a number, or a random id), as services that know
//! their own listen address do.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// Wraps `app` so that its answers carry this instance's noise; `addr` is where it listens.
pub fn with_noise(app: axum::Router, addr: SocketAddr) -> axum::Router {
    let origin = format!("http://{addr}");
    app.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let origin = origin.clone();
            async move { add_noise(&origin, request, next).await }
        },
    ))
}

async fn add_noise(origin: &str, request: Request, next: Next) -> Response {
    let creates_account =
        request.method() == axum::http::Method::POST && request.uri().path() == "/accounts";
    let mut response = next.run(request).await;
    if creates_account && response.status() == StatusCode::CREATED {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        // A number, or a string with random ids.
        let id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| match &v["id"] {
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::String(s) => Some(s.clone()),
                _ => None,
            });
        response = Response::from_parts(parts, Body::from(bytes));
        if let Some(id) = id {
            insert(&mut response, "location", format!("{origin}/accounts/{id}"));
        }
    }
    insert(&mut response, "x-served-by", origin.to_owned());
    insert(
        &mut response,
        "x-generated-at",
        humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
    );
    insert(&mut response, "x-trace-id", uuid());
    insert(&mut response, "etag", format!("\"{:016x}\"", random()));
    response
}

fn insert(response: &mut Response, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
}

/// A random 64-bit number: the process's randomly keyed hasher over a counter.
fn random() -> u64 {
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A version-4-shaped UUID.
fn uuid() -> String {
    let (a, b) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_shaped_and_differ() {
        let (a, b) = (uuid(), uuid());
        assert_ne!(a, b);
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
    }
}

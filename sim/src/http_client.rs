//! A minimal HTTP/1.1 client on the simulated network: one connection per request, so that a
//! fault only ever costs the request it interrupted.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use turmoil::net::TcpStream;

/// A complete response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The `balance` field of a JSON account body.
    pub(crate) fn balance(&self) -> Option<i64> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("balance")?.as_i64()
    }

    /// The `error` field of a gateway error body (`{"error": CODE, "detail": ...}`).
    pub(crate) fn error(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        Some(value.get("error")?.as_str()?.to_owned())
    }

    /// The `id` field of a JSON account body.
    pub(crate) fn id(&self) -> Option<u64> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("id")?.as_u64()
    }
}

/// Sends one request to `host:port` and reads the whole response, within `timeout` of
/// simulated time. `None` on any failure: the request may or may not have been processed.
pub(crate) async fn send(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Option<Reply> {
    let exchange = async {
        let stream = TcpStream::connect((host, port)).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(Reply { status, body })
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

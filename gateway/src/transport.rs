//! The pipeline's HTTP client, on pingora's pooled connector: the bytes every backend receives
//! are produced by the same code, with the same header order and framing.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use dashmap::DashMap;
use lockstep_backends::{Backend, Transport, TransportError};
use lockstep_journal::{Header, RequestRecord, ResponseRecord};
use pingora::connectors::L4Connect;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::{HttpPeer, Peer};

/// Largest backend response the gateway buffers for a logical request.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// How long an idle pooled connection to a backend is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How the gateway reaches a backend: its timeouts, and what opens the connection.
#[derive(Debug, Clone)]
pub struct PeerTimeouts {
    pub connect: Duration,
    /// Read/write timeout of a single socket operation; the whole exchange is bounded by the
    /// caller's timeout.
    pub io: Duration,
    /// Opens the TCP connection to a backend's address instead of the operating system, when
    /// set: the seam through which a simulation puts its own network under the gateway. `None`
    /// (the binary) dials through the OS.
    pub connector: Option<BackendConnector>,
}

/// A caller's layer-4 connector (see [`PeerTimeouts::connector`]).
pub type BackendConnector = Arc<dyn L4Connect + Send + Sync>;

/// One pooled HTTP/1.1 client for all backends. Keep one per runtime: pooled connections belong
/// to the runtime that opened them.
pub struct PingoraTransport {
    connector: Connector,
    peers: DashMap<String, Arc<HttpPeer>>,
    timeouts: PeerTimeouts,
    /// `[gateway] public_url`: what a backend's own origin in its answers becomes.
    public_url: Option<url::Url>,
}

impl std::fmt::Debug for PingoraTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingoraTransport")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl PingoraTransport {
    pub fn new(timeouts: PeerTimeouts) -> Self {
        PingoraTransport {
            connector: Connector::new(None),
            peers: DashMap::new(),
            timeouts,
            public_url: None,
        }
    }

    /// Rewrites a backend's own origin in its answers to `public_url` rather than to the
    /// request's `Host`.
    pub fn with_public_url(mut self, public_url: Option<url::Url>) -> Self {
        self.public_url = public_url;
        self
    }

    fn peer(&self, backend: &Backend) -> Result<Arc<HttpPeer>, TransportError> {
        if let Some(p) = self.peers.get(backend.url.as_str()) {
            return Ok(p.clone());
        }
        let peer = Arc::new(backend_peer(&backend.url, &self.timeouts)?);
        self.peers.insert(backend.url.to_string(), peer.clone());
        Ok(peer)
    }

    async fn exchange(
        &self,
        peer: &HttpPeer,
        backend: &Backend,
        request: &RequestRecord,
        extra: &[Header],
    ) -> Result<ResponseRecord, TransportError> {
        let mut first_attempt = true;
        loop {
            let (mut session, reused) = self
                .connector
                .get_http_session(peer)
                .await
                .map_err(|e| TransportError::Connect(e.to_string()))?;
            let header = request_header(backend, request, extra)
                .map_err(|e| TransportError::Connect(format!("cannot build the request: {e}")))?;
            // A failure while writing on a pooled connection means the backend closed it while
            // idle: the request was not received, so it is safe to send it again on a fresh one.
            // Once the request is fully written, nothing is retried: the backend may have
            // processed it.
            let written: pingora::Result<()> = async {
                session.write_request_header(Box::new(header)).await?;
                if !request.body.is_empty() {
                    session
                        .write_request_body(request.body.clone(), true)
                        .await?;
                }
                session.finish_request_body().await?;
                Ok(())
            }
            .await;
            if let Err(e) = written {
                if reused && first_attempt {
                    first_attempt = false;
                    continue;
                }
                return Err(TransportError::Connect(format!(
                    "could not send the request: {e}"
                )));
            }
            let read: pingora::Result<ResponseRecord> = async {
                loop {
                    session.read_response_header().await?;
                    let informational = session
                        .response_header()
                        .is_some_and(|h| h.status.is_informational());
                    if !informational {
                        break;
                    }
                }
                let head = session.response_header().expect("read above").clone();
                let mut body = BytesMut::new();
                while let Some(chunk) = session.read_response_body().await? {
                    if body.len() + chunk.len() > MAX_RESPONSE {
                        return pingora::Error::e_explain(
                            pingora::ErrorType::InvalidHTTPHeader,
                            "backend response larger than 64 MiB",
                        );
                    }
                    body.extend_from_slice(&chunk);
                }
                let headers = head
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        Header::new(
                            name.as_str(),
                            bytes::Bytes::copy_from_slice(value.as_bytes()),
                        )
                    })
                    .collect();
                Ok(ResponseRecord {
                    status: head.status.as_u16(),
                    headers,
                    body: body.freeze(),
                })
            }
            .await;
            return match read {
                Ok(response) => {
                    self.connector
                        .release_http_session(session, peer, peer.idle_timeout())
                        .await;
                    Ok(response)
                }
                Err(e) => Err(TransportError::Exchange(e.to_string())),
            };
        }
    }
}

#[async_trait]
impl Transport for PingoraTransport {
    async fn send(
        &self,
        backend: &Backend,
        request: &RequestRecord,
        extra: &[Header],
        timeout: Duration,
    ) -> Result<ResponseRecord, TransportError> {
        let peer = self.peer(backend)?;
        let mut response = match tokio::time::timeout(
            timeout,
            self.exchange(&peer, backend, request, extra),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => return Err(TransportError::Timeout(timeout)),
        };
        let host = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .and_then(|h| std::str::from_utf8(&h.value).ok());
        crate::origin::rewrite_response(
            &mut response,
            &backend.url,
            self.public_url.as_ref(),
            host,
        );
        Ok(response)
    }
}

/// The pingora peer for a backend URL, with every timeout set (pingora's defaults are none).
pub(crate) fn backend_peer(
    url: &url::Url,
    timeouts: &PeerTimeouts,
) -> Result<HttpPeer, TransportError> {
    let host = url
        .host_str()
        .ok_or_else(|| TransportError::Connect(format!("{url} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| TransportError::Connect(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| TransportError::Connect(format!("{host} resolves to no address")))?;
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(timeouts.connect);
    peer.options.total_connection_timeout = Some(timeouts.connect);
    peer.options.read_timeout = Some(timeouts.io);
    peer.options.write_timeout = Some(timeouts.io);
    peer.options.idle_timeout = Some(POOL_IDLE);
    peer.options.custom_l4 = timeouts.connector.clone();
    peer.options.upstream_tcp_sock_tweak_hook = Some(Arc::new(abort_on_close));
    Ok(peer)
}

/// Backend connections are closed with a reset (`SO_LINGER` 0), never with an orderly close:
/// an exchange the gateway gave up on (a timeout, a cut network) must not reach the backend
/// later. With an orderly close the kernel keeps retransmitting the unacknowledged request after
/// the socket is closed — even after the process exited — so a backend cut off by a partition
/// could apply it once the network heals, after the gateway had settled the request without it
/// (possibly after resetting and refilling that backend). A reset discards the unsent bytes.
/// Connections are closed only idle (nothing pending) or abandoned, so nothing else is lost.
fn abort_on_close(socket: &tokio::net::TcpSocket) -> pingora::Result<()> {
    use pingora::OrErr;
    socket.set_zero_linger().or_err(
        pingora::ErrorType::SocketError,
        "cannot set SO_LINGER on a backend socket",
    )
}

/// The path prefix of a backend URL (`http://h/api/` → `/api`), empty for none.
pub(crate) fn path_prefix(url: &url::Url) -> &str {
    url.path().trim_end_matches('/')
}

fn request_header(
    backend: &Backend,
    request: &RequestRecord,
    extra: &[Header],
) -> pingora::Result<RequestHeader> {
    let uri = format!("{}{}", path_prefix(&backend.url), request.uri);
    let mut header = RequestHeader::build(
        request.method.as_str(),
        uri.as_bytes(),
        Some(request.headers.len() + 4),
    )?;
    let mut has_host = false;
    for h in &request.headers {
        has_host |= h.name.eq_ignore_ascii_case("host");
        header.append_header(h.name.clone(), h.value.as_ref())?;
    }
    if !has_host {
        let host = match backend.url.port() {
            Some(port) => format!("{}:{port}", backend.url.host_str().unwrap_or("localhost")),
            None => backend.url.host_str().unwrap_or("localhost").to_string(),
        };
        header.insert_header("Host", host)?;
    }
    for h in extra {
        header.insert_header(h.name.clone(), h.value.as_ref())?;
    }
    let bodiless =
        request.body.is_empty() && matches!(request.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if !bodiless {
        header.insert_header("Content-Length", request.body.len().to_string())?;
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn backend(addr: std::net::SocketAddr) -> Backend {
        let url = url::Url::parse(&format!("http://{addr}/")).unwrap();
        Backend::with_identity("b", url, "memory")
    }

    #[tokio::test]
    async fn an_abandoned_exchange_is_reset_not_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transport = PingoraTransport::new(PeerTimeouts {
            connect: Duration::from_secs(1),
            io: Duration::from_secs(5),
            connector: None,
        });
        let request = RequestRecord {
            method: "POST".into(),
            uri: "/accounts/1/deposit".into(),
            headers: vec![],
            body: bytes::Bytes::from_static(b"{\"amount\":1}"),
        };
        let b = backend(addr);
        let sending = transport.send(&b, &request, &[], Duration::from_millis(300));
        let accepting = async { listener.accept().await.unwrap().0 };
        // The backend accepts but never answers: the gateway gives up after 300 ms.
        let (sent, mut conn) = tokio::join!(sending, accepting);
        assert_eq!(
            sent,
            Err(TransportError::Timeout(Duration::from_millis(300)))
        );
        let mut received = Vec::new();
        let end = loop {
            let mut buf = [0u8; 4096];
            match conn.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e.kind()),
            }
        };
        assert_eq!(
            end,
            Err(std::io::ErrorKind::ConnectionReset),
            "the abandoned connection ends with a reset, so no retransmission can follow; \
             received {} bytes first",
            received.len()
        );
    }
}

//! An HTTP abuse corpus, written byte for byte over raw TCP to a gateway in front of three
//! recording backends: request smuggling and ambiguous framing, malformed request lines and
//! fields, oversized heads and bodies, and slow clients.
//!
//! Each case checks the answer (status, and whether the connection is closed) and the invariant
//! that matters most for replication: whatever is forwarded reaches every backend as the same
//! request (method, URI, headers and body as each backend recorded them), only complete and
//! valid requests are forwarded, and a smuggled request never reaches any backend.
//!
//! Where a request is accepted and the connection stays open, a canary request follows on the
//! same connection and must get its own answer: the gateway and the client still agree where
//! each request ends.

#[path = "support/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Small limits so that the oversized and slow cases stay fast.
const LIMITS: &str =
    "[gateway]\nmax_header_size = \"4KiB\"\nmax_body = \"1KiB\"\nrequest_timeout = \"1s\"\n";

/// The most a test waits for one answer or for the gateway to close a connection.
const BOUND: Duration = Duration::from_secs(10);

/// The request a smuggling attempt hides behind another; it must never reach a backend.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: lockstep.test\r\n\r\n";

// ------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: bytes are written exactly as given.

/// One response as read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    /// The `error` field of a gateway's JSON error body.
    fn error_code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Wire {
    async fn open(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`; a gateway that already closed the connection makes this fail, which
    /// the reads that follow observe.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Reads more bytes; false once the gateway closed (or reset) the connection.
    async fn fill(&mut self, case: &str) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(BOUND, self.stream.read(&mut chunk)).await {
            Err(_) => panic!("{case}: neither an answer nor a close within {BOUND:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next final response (1xx are skipped), or `None` if the gateway closed the
    /// connection without answering.
    async fn response(&mut self, case: &str) -> Option<Response> {
        loop {
            let head_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break i + 4;
                }
                if !self.fill(case).await {
                    assert!(
                        self.buf.is_empty(),
                        "{case}: the connection closed inside a response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return None;
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{case}: bad status line {status_line:?}"));
            let headers: Vec<(String, String)> = lines
                .filter(|l| !l.is_empty())
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            assert!(
                !headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding")
                        && v.contains("chunked")),
                "{case}: the corpus expects length-delimited answers: {head}"
            );
            while self.buf.len() < head_end + length {
                assert!(
                    self.fill(case).await,
                    "{case}: the connection closed inside a response body"
                );
            }
            let body = self.buf[head_end..head_end + length].to_vec();
            self.buf.drain(..head_end + length);
            if (100..200).contains(&status) {
                continue;
            }
            return Some(Response { status, body });
        }
    }

    /// Waits until the gateway closes the connection, failing if anything more arrives.
    async fn expect_closed(&mut self, case: &str) {
        while self.fill(case).await {}
        assert!(
            self.buf.is_empty(),
            "{case}: unexpected bytes before the close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

// ------------------------------------------------------------------------------------------
// What the backends saw.

/// Whether `uri` belongs to the case `token`: its first path segment is the token, possibly
/// followed by percent-encoded bytes.
fn of_case(uri: &str, token: &str) -> bool {
    let rest = uri.strip_prefix('/').and_then(|u| u.strip_prefix(token));
    rest.is_some_and(|r| r.is_empty() || r.starts_with(['/', '?', '%']))
}

/// Everything each backend recorded for the case `token` (health checks are never recorded).
fn seen(mocks: &[MockServer], token: &str) -> Vec<Vec<Received>> {
    mocks
        .iter()
        .map(|m| {
            m.mock
                .received()
                .into_iter()
                .filter(|r| of_case(&r.uri, token))
                .collect()
        })
        .collect()
}

/// Every request for the case `token` that arrived at any backend, recorded or not.
fn arrived(mocks: &[MockServer], token: &str) -> Vec<String> {
    mocks
        .iter()
        .flat_map(|m| m.mock.arrived())
        .filter(|u| of_case(u, token))
        .collect()
}

/// The one request of a case as the backends recorded it; checks that every backend that
/// should have it has exactly one, all identical, and the others none.
fn the_forwarded(case: &str, mocks: &[MockServer], token: &str, logical: bool) -> Received {
    let seen = seen(mocks, token);
    let primary = &seen[0];
    assert_eq!(
        primary.len(),
        1,
        "{case}: the primary received {} requests: {primary:?}",
        primary.len()
    );
    let first = &primary[0];
    for (i, got) in seen.iter().enumerate().skip(1) {
        if !logical {
            assert!(
                got.is_empty(),
                "{case}: a read reached backup #{i}: {got:?}"
            );
            continue;
        }
        assert_eq!(got.len(), 1, "{case}: backup #{i} received {got:?}");
        let r = &got[0];
        assert_eq!(
            (&r.method, &r.uri, &r.headers, &r.body),
            (&first.method, &first.uri, &first.headers, &first.body),
            "{case}: backup #{i} received another request than the primary"
        );
    }
    first.clone()
}

fn assert_nothing_smuggled(case: &str, mocks: &[MockServer]) {
    let smuggled: Vec<String> = mocks
        .iter()
        .flat_map(|m| m.mock.arrived())
        .filter(|u| u.contains("smuggled"))
        .collect();
    assert!(
        smuggled.is_empty(),
        "{case}: a smuggled request reached a backend: {smuggled:?}"
    );
}

/// Checks that no request of the case `token` arrived at any backend: for cases refused before
/// anything is forwarded.
fn assert_nothing_forwarded(case: &str, mocks: &[MockServer], token: &str) {
    let arrived = arrived(mocks, token);
    assert!(
        arrived.is_empty(),
        "{case}: a refused request reached a backend: {arrived:?}"
    );
    // Cases whose target cannot carry the token name themselves in `X-Case`.
    let tagged: Vec<Received> = mocks
        .iter()
        .flat_map(|m| m.mock.received())
        .filter(|r| r.header("x-case") == Some(token))
        .collect();
    assert!(
        tagged.is_empty(),
        "{case}: a refused request reached a backend: {tagged:?}"
    );
}

/// For a read refused because of its body: no backup saw it, and if the primary saw its head it
/// never received a body (the gateway aborts the exchange).
fn assert_never_completed(case: &str, mocks: &[MockServer], token: &str) {
    let seen = seen(mocks, token);
    assert!(
        seen[1..].iter().all(Vec::is_empty),
        "{case}: a read reached a backup: {seen:?}"
    );
    assert!(
        seen[0].iter().all(|r| r.body.is_empty()),
        "{case}: the primary received a body: {seen:?}"
    );
}

/// A canary on the same connection must get its own answer: framing is still in sync.
async fn canary(case: &str, wire: &mut Wire, token: &str) {
    let request = format!("GET /{token}-canary HTTP/1.1\r\nHost: lockstep.test\r\n\r\n");
    wire.send(request.as_bytes()).await;
    let r = wire
        .response(case)
        .await
        .unwrap_or_else(|| panic!("{case}: the connection closed before the canary's answer"));
    assert_eq!(r.status, 200, "{case}: canary answer {r:?}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["key"],
        format!("{token}-canary"),
        "{case}: the canary got another request's answer: {v}"
    );
}

// ------------------------------------------------------------------------------------------
// The corpus.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Accepted and forwarded: the backends receive `body`, the client gets the backend's 200,
    /// and the connection stays usable (a canary follows).
    Forwarded(&'static str),
    /// Like `Forwarded`, but the gateway closes the connection after answering: nothing
    /// after the request is ever read as another request.
    ForwardedThenClosed(&'static str),
    /// Refused with this status, nothing forwarded, connection closed.
    Refused(u16),
    /// Refused with this status, nothing forwarded; the request was well framed, so the
    /// connection stays usable (a canary follows).
    RefusedOpen(u16),
    /// A read refused with this status because of its body, after its head may have gone to
    /// the primary (reads stream): closed, no backup saw it, the primary never received a body.
    RefusedMidBody(u16),
}

struct Case {
    name: &'static str,
    /// Whether the method makes it a logical request (replicated) rather than a read.
    logical: bool,
    /// The raw request; `{p}` is replaced by the case's unique path token.
    raw: Vec<u8>,
    expect: Expect,
    /// The URI the backends must receive, when it is not the one sent; `{p}` as in `raw`.
    uri: Option<&'static str>,
}

fn case(name: &'static str, logical: bool, raw: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        logical,
        raw: raw.into(),
        expect,
        uri: None,
    }
}

impl Case {
    fn forwarded_as(self, uri: &'static str) -> Case {
        Case {
            uri: Some(uri),
            ..self
        }
    }
}

/// `raw` with every `{p}` replaced by `token`.
fn with_token(raw: &[u8], token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut rest = raw;
    while let Some(i) = find(rest, b"{p}") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(token.as_bytes());
        rest = &rest[i + 3..];
    }
    out.extend_from_slice(rest);
    out
}

/// `METHOD /{p} HTTP/1.1`, a Host, the given header lines, a blank line and `rest`.
fn req(method: &str, fields: &str, rest: &str) -> String {
    format!("{method} /{{p}} HTTP/1.1\r\nHost: lockstep.test\r\n{fields}\r\n{rest}")
}

fn framing_corpus() -> Vec<Case> {
    use Expect::*;
    let chunked_hello = "5\r\nhello\r\n0\r\n\r\n";
    let te = "Transfer-Encoding: chunked\r\n";
    vec![
        // Content-Length and Transfer-Encoding together: Transfer-Encoding frames the body,
        // Content-Length is dropped and the connection closes after the answer
        // (RFC 9112 section 6.1), so whatever follows is never read as a request.
        case(
            "CL.TE: Content-Length then Transfer-Encoding (POST)",
            true,
            req(
                "POST",
                "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n",
                &format!("{chunked_hello}{SMUGGLED}"),
            ),
            ForwardedThenClosed("hello"),
        ),
        case(
            "TE.CL: Transfer-Encoding then Content-Length (POST)",
            true,
            req(
                "POST",
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                &format!("{chunked_hello}{SMUGGLED}"),
            ),
            ForwardedThenClosed("hello"),
        ),
        case(
            "CL.TE: Content-Length and Transfer-Encoding (GET)",
            false,
            req(
                "GET",
                "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n",
                &format!("{chunked_hello}{SMUGGLED}"),
            ),
            ForwardedThenClosed("hello"),
        ),
        case(
            "CL.TE with a zero chunk hiding a request (POST)",
            true,
            req(
                "POST",
                &format!("Content-Length: {}\r\n{te}", 5 + SMUGGLED.len()),
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            ForwardedThenClosed(""),
        ),
        // Duplicate Content-Length.
        case(
            "Content-Length twice, same value (POST)",
            true,
            req(
                "POST",
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                "hello",
            ),
            Forwarded("hello"),
        ),
        case(
            "Content-Length list of equal values `5, 5` (POST)",
            true,
            req("POST", "Content-Length: 5, 5\r\n", "hello"),
            Forwarded("hello"),
        ),
        case(
            "Content-Length twice, same value (GET)",
            false,
            req("GET", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            Forwarded("hello"),
        ),
        case(
            "Content-Length twice, conflicting values (POST)",
            true,
            req(
                "POST",
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                &format!("hello!{SMUGGLED}"),
            ),
            Refused(400),
        ),
        case(
            "Content-Length list of conflicting values `5, 6` (POST)",
            true,
            req("POST", "Content-Length: 5, 6\r\n", "hello!"),
            Refused(400),
        ),
        case(
            "Content-Length twice, conflicting values (GET)",
            false,
            req(
                "GET",
                "Content-Length: 6\r\nContent-Length: 5\r\n",
                &format!("hello!{SMUGGLED}"),
            ),
            Refused(400),
        ),
        case(
            "Content-Length with a sign `+5` (POST)",
            true,
            req("POST", "Content-Length: +5\r\n", "hello"),
            Refused(400),
        ),
        case(
            "Content-Length negative `-5` (POST)",
            true,
            req("POST", "Content-Length: -5\r\n", "hello"),
            Refused(400),
        ),
        case(
            "Content-Length in hex `0x5` (POST)",
            true,
            req("POST", "Content-Length: 0x5\r\n", "hello"),
            Refused(400),
        ),
        case(
            "Content-Length with inner space `5 5` (POST)",
            true,
            req("POST", "Content-Length: 5 5\r\n", "hello"),
            Refused(400),
        ),
        case(
            "Content-Length overflowing u64 (POST)",
            true,
            req(
                "POST",
                "Content-Length: 99999999999999999999999\r\n",
                "hello",
            ),
            Refused(400),
        ),
        // Obfuscated Transfer-Encoding.
        case(
            "Transfer-Encoding: xchunked (POST)",
            true,
            req("POST", "Transfer-Encoding: xchunked\r\n", chunked_hello),
            Refused(400),
        ),
        case(
            "Transfer-Encoding: xchunked (GET)",
            false,
            req("GET", "Transfer-Encoding: xchunked\r\n", chunked_hello),
            Refused(400),
        ),
        case(
            "`Transfer-Encoding : chunked`, space before the colon (POST)",
            true,
            req(
                "POST",
                "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
                chunked_hello,
            ),
            Refused(400),
        ),
        case(
            "Transfer-Encoding: chunked, identity (POST)",
            true,
            req(
                "POST",
                "Transfer-Encoding: chunked, identity\r\n",
                chunked_hello,
            ),
            Refused(400),
        ),
        case(
            "Transfer-Encoding lines `chunked` then `identity` (POST)",
            true,
            req(
                "POST",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                chunked_hello,
            ),
            Refused(400),
        ),
        case(
            "Transfer-Encoding with a vertical tab before chunked (POST)",
            true,
            req("POST", "Transfer-Encoding: \x0bchunked\r\n", chunked_hello),
            Refused(400),
        ),
        case(
            "Transfer-Encoding folded onto a continuation line (POST)",
            true,
            req("POST", "Transfer-Encoding:\r\n chunked\r\n", chunked_hello),
            Refused(400),
        ),
        case(
            "Transfer-Encoding on an HTTP/1.0 request (POST)",
            true,
            format!(
                "POST /{{p}} HTTP/1.0\r\nHost: lockstep.test\r\n{te}\r\n{chunked_hello}{SMUGGLED}"
            ),
            Refused(400),
        ),
        // Spellings that still say `chunked` last: the body is decoded as chunked and the
        // backends receive it with a Content-Length.
        case(
            "Transfer-Encoding: identity, chunked (POST)",
            true,
            req(
                "POST",
                "Transfer-Encoding: identity, chunked\r\n",
                chunked_hello,
            ),
            Forwarded("hello"),
        ),
        case(
            "Transfer-Encoding with a tab before the value (POST)",
            true,
            req("POST", "Transfer-Encoding:\tchunked\r\n", chunked_hello),
            Forwarded("hello"),
        ),
        case(
            "Transfer-Encoding: CHUNKED in capitals (POST)",
            true,
            req("POST", "Transfer-Encoding: CHUNKED\r\n", chunked_hello),
            Forwarded("hello"),
        ),
        case(
            "Transfer-Encoding: chunked twice (POST)",
            true,
            req(
                "POST",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                chunked_hello,
            ),
            Forwarded("hello"),
        ),
        // Bad chunk sizes: the body cannot be framed, so nothing is forwarded and the
        // connection closes (what follows could be anything).
        case(
            "chunk size not hex `zz` (POST)",
            true,
            req("POST", te, &format!("zz\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Refused(400),
        ),
        case(
            "chunk size negative `-5` (POST)",
            true,
            req("POST", te, &format!("-5\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Refused(400),
        ),
        case(
            "chunk size with a `0x` prefix (POST)",
            true,
            req("POST", te, &format!("0x5\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Refused(400),
        ),
        case(
            "chunk size overflowing u64, 17 hex digits (POST)",
            true,
            req(
                "POST",
                te,
                &format!("1ffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
            ),
            Refused(400),
        ),
        case(
            "chunk size with a leading space (POST)",
            true,
            req("POST", te, &format!(" 5\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Refused(400),
        ),
        case(
            "chunk data without its CRLF (POST)",
            true,
            req("POST", te, &format!("5\r\nhelloXX0\r\n\r\n{SMUGGLED}")),
            Refused(400),
        ),
        case(
            "chunk size line ended by a bare CR (POST)",
            true,
            req("POST", te, &format!("5\rhello\r\n0\r\n\r\n{SMUGGLED}")),
            Refused(400),
        ),
        case(
            "chunk size not hex `zz` (GET)",
            false,
            req("GET", te, &format!("zz\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            RefusedMidBody(400),
        ),
        case(
            "chunk extension containing a bare LF (POST)",
            true,
            req("POST", te, "3;ext\nabc\r\nxyz\r\n0\r\n\r\n"),
            Forwarded("xyz"),
        ),
        case(
            "trailer fields after the last chunk (POST)",
            true,
            req("POST", te, "5\r\nhello\r\n0\r\nX-Trailer: injected\r\n\r\n"),
            Forwarded("hello"),
        ),
        // Line endings.
        case(
            "bare LF line endings throughout (POST)",
            true,
            "POST /{p} HTTP/1.1\nHost: lockstep.test\nContent-Length: 5\n\nhello",
            Forwarded("hello"),
        ),
        case(
            "CRLF and bare LF mixed (GET)",
            false,
            "GET /{p} HTTP/1.1\r\nHost: lockstep.test\nX-Mixed: 1\r\n\n",
            Forwarded(""),
        ),
        case(
            "bare CR ending the request line (POST)",
            true,
            "POST /{p} HTTP/1.1\rHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "bare CR line endings throughout (POST)",
            true,
            "POST /{p} HTTP/1.1\rHost: lockstep.test\rContent-Length: 5\r\rhello",
            Refused(400),
        ),
        case(
            "bare CR inside a header value (POST)",
            true,
            req("POST", "X-Split: a\rContent-Length: 0\r\n", ""),
            Refused(400),
        ),
        // NUL bytes.
        case(
            "NUL in a header name (POST)",
            true,
            req("POST", "X-N\0ul: 1\r\nContent-Length: 5\r\n", "hello"),
            Refused(400),
        ),
        case(
            "NUL in a header value (POST)",
            true,
            req("POST", "X-Nul: a\0b\r\nContent-Length: 5\r\n", "hello"),
            Refused(400),
        ),
        case(
            "NUL in a header value (GET)",
            false,
            req("GET", "X-Nul: a\0b\r\n", ""),
            Refused(400),
        ),
        // pingora percent-encodes bytes not allowed in a request target (controls, space, `"`,
        // `<`, `>`) instead of refusing the request; every backend receives the same target.
        case(
            "NUL in the request target (POST)",
            true,
            "POST /{p}\0x HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Forwarded("hello"),
        )
        .forwarded_as("/{p}%00x"),
        case(
            "space in the request target (GET)",
            false,
            "GET /{p} x HTTP/1.1\r\nHost: lockstep.test\r\n\r\n",
            Forwarded(""),
        )
        .forwarded_as("/{p}%20x"),
        case(
            "NUL in the method (POST)",
            true,
            "PO\0ST /{p} HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "NUL in the HTTP version (POST)",
            true,
            "POST /{p} HTTP/1.1\0\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        // Host.
        case(
            "HTTP/1.1 without Host (POST)",
            true,
            "POST /{p} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            RefusedOpen(400),
        ),
        case(
            "HTTP/1.1 without Host (GET)",
            false,
            "GET /{p} HTTP/1.1\r\n\r\n",
            RefusedOpen(400),
        ),
        case(
            "HTTP/1.0 without Host (POST)",
            true,
            "POST /{p} HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "HTTP/1.0 without Host (GET)",
            false,
            "GET /{p} HTTP/1.0\r\n\r\n",
            ForwardedThenClosed(""),
        ),
        case(
            "Host twice (POST)",
            true,
            req("POST", "Host: other.test\r\nContent-Length: 5\r\n", "hello"),
            Refused(400),
        ),
        case(
            "absolute-form target naming another host than Host (POST)",
            true,
            "POST http://other.test/{p} HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "Connection nominating Host (POST)",
            true,
            req("POST", "Connection: Host\r\nContent-Length: 5\r\n", "hello"),
            RefusedOpen(400),
        ),
        case(
            "Connection nominating Host (GET)",
            false,
            req("GET", "Connection: Host\r\n", ""),
            Refused(400),
        ),
        // Request lines.
        case(
            "HTTP/0.9 request line without a version",
            false,
            "GET /{p}\r\n\r\n",
            Refused(400),
        ),
        case(
            "HTTP/2.0 in an HTTP/1 request line (POST)",
            true,
            "POST /{p} HTTP/2.0\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "two spaces after the method (POST)",
            true,
            "POST  /{p} HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "a request target that is not a path (POST)",
            true,
            "POST {p}/x HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "a request target that is not a path (GET)",
            false,
            "GET {p}/x HTTP/1.1\r\nHost: lockstep.test\r\n\r\n",
            Refused(400),
        ),
        case(
            "a request target starting with `?` (POST)",
            true,
            "POST ?{p} HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "a request target with a byte that is not UTF-8 (POST)",
            true,
            &b"POST /{p}/\xff HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello"[..],
            Refused(400),
        ),
        case(
            "a request target with a byte that is not UTF-8 (GET)",
            false,
            &b"GET /{p}/\xff HTTP/1.1\r\nHost: lockstep.test\r\n\r\n"[..],
            Refused(400),
        ),
        case(
            "asterisk-form target on a POST",
            true,
            "POST * HTTP/1.1\r\nHost: lockstep.test\r\nX-Case: {p}\r\nContent-Length: 5\r\n\r\nhello",
            Refused(400),
        ),
        case(
            "absolute-form target naming the Host (POST)",
            true,
            "POST http://lockstep.test/{p} HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Forwarded("hello"),
        ),
        case(
            "Upgrade on a state-changing request (POST)",
            true,
            req(
                "POST",
                "Connection: Upgrade, Keep-Alive\r\nUpgrade: websocket\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nContent-Length: 5\r\n",
                "hello",
            ),
            Forwarded("hello"),
        ),
        // Methods.
        case(
            "lowercase method `post` is state-changing (fail closed)",
            true,
            "post /{p} HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 5\r\n\r\nhello",
            Forwarded("hello"),
        ),
        case(
            "CONNECT",
            true,
            "CONNECT lockstep.test:443 HTTP/1.1\r\nHost: lockstep.test:443\r\nX-Case: {p}\r\n\r\n",
            Refused(405),
        ),
        // Pipelining: a second request in the same write as a complete first one is not
        // read; the connection closes after the first answer.
        case(
            "a second request pipelined behind a complete one (POST)",
            true,
            req(
                "POST",
                "Content-Length: 5\r\n",
                &format!("hello{}", SMUGGLED.replace("GET", "POST")),
            ),
            ForwardedThenClosed("hello"),
        ),
        case(
            "a second request pipelined behind a complete one (GET)",
            false,
            req("GET", "", SMUGGLED),
            ForwardedThenClosed(""),
        ),
    ]
}

/// Runs `cases` one after another against `gw`, one connection each, and fails with the list
/// of every case that did not go as expected.
async fn run_corpus(gw: SocketAddr, mocks: &[MockServer], prefix: &str, cases: Vec<Case>) {
    use futures::FutureExt;
    let mut failed = Vec::new();
    let mut refused = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let token = format!("{prefix}{i:02}");
        if matches!(c.expect, Expect::Refused(_) | Expect::RefusedOpen(_)) {
            refused.push((c.name, token.clone()));
        }
        if let Err(panic) = std::panic::AssertUnwindSafe(run_case(gw, mocks, token, c))
            .catch_unwind()
            .await
        {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(message);
        }
    }
    // Once more at the end, when anything sent late would have arrived too.
    for (name, token) in refused {
        let late = arrived(mocks, &token);
        if !late.is_empty() {
            failed.push(format!(
                "{name}: a refused request reached a backend: {late:?}"
            ));
        }
    }
    let smuggled: Vec<String> = mocks
        .iter()
        .flat_map(|m| m.mock.arrived())
        .filter(|u| u.contains("smuggled"))
        .collect();
    if !smuggled.is_empty() {
        failed.push(format!(
            "a smuggled request reached a backend: {smuggled:?}"
        ));
    }
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// One case on its own connection; panics naming the case when it does not go as expected.
async fn run_case(gw: SocketAddr, mocks: &[MockServer], token: String, c: Case) {
    let name = c.name;
    let raw = with_token(&c.raw, &token);
    let mut wire = Wire::open(gw).await;
    wire.send(&raw).await;
    let answer = wire.response(name).await;
    match c.expect {
        Expect::Refused(status) | Expect::RefusedOpen(status) | Expect::RefusedMidBody(status) => {
            let r = answer
                .unwrap_or_else(|| panic!("{name}: closed without an answer, expected {status}"));
            assert_eq!(
                r.status,
                status,
                "{name}: answered {} {:?}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            let code = match status {
                413 => "body_too_large",
                431 => "header_too_large",
                _ => "",
            };
            if !code.is_empty() {
                assert_eq!(r.error_code(), code, "{name}: the gateway's error");
            }
            match c.expect {
                Expect::RefusedOpen(_) => canary(name, &mut wire, &token).await,
                _ => wire.expect_closed(name).await,
            }
            if matches!(c.expect, Expect::RefusedMidBody(_)) {
                assert_never_completed(name, mocks, &token);
            } else {
                assert_nothing_forwarded(name, mocks, &token);
            }
        }
        Expect::Forwarded(body) | Expect::ForwardedThenClosed(body) => {
            let r = answer.unwrap_or_else(|| panic!("{name}: closed without an answer"));
            assert_eq!(
                r.status,
                200,
                "{name}: answered {} {:?}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            let got = the_forwarded(name, mocks, &token, c.logical);
            let uri = c.uri.unwrap_or("/{p}").replace("{p}", &token);
            assert_eq!(got.uri, uri, "{name}: the URI the backends received");
            assert_eq!(
                String::from_utf8_lossy(&got.body),
                body,
                "{name}: the body the backends received"
            );
            if c.logical {
                for hop in [
                    "transfer-encoding",
                    "connection",
                    "keep-alive",
                    "upgrade",
                    "te",
                    "trailer",
                    "x-trailer",
                    "expect",
                ] {
                    assert!(
                        got.header(hop).is_none(),
                        "{name}: a backend received {hop}: {got:?}"
                    );
                }
                assert_eq!(
                    got.header("content-length"),
                    Some(body.len().to_string().as_str()),
                    "{name}: logical requests reach the backends with one Content-Length"
                );
            }
            if matches!(c.expect, Expect::Forwarded(_)) {
                canary(name, &mut wire, &token).await;
            } else {
                wire.expect_closed(name).await;
            }
        }
    }
    assert_nothing_smuggled(name, mocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smuggling_and_malformed_requests_are_refused_or_forwarded_identically() {
    let (mocks, backends) = start_mocks(3).await;
    let gw = start_gateway(&format!("{LIMITS}{backends}"));
    run_corpus(gw.gateway, &mocks, "f", framing_corpus()).await;
    gw.stop().await;
}

fn size_corpus() -> Vec<Case> {
    use Expect::*;
    let te = "Transfer-Encoding: chunked\r\n";
    // Over `max_header_size` (4 KiB here), under pingora's own 1 MiB head limit.
    let big = "a".repeat(5000);
    let many_fields: String = (0..300).map(|i| format!("X-F{i}: 1\r\n")).collect();
    let chunk = "b".repeat(600);
    let exactly_max: &'static str = Box::leak("c".repeat(1024).into_boxed_str());
    vec![
        case(
            "a header beyond max_header_size (POST)",
            true,
            req(
                "POST",
                &format!("X-Big: {big}\r\nContent-Length: 0\r\n"),
                "",
            ),
            Refused(431),
        ),
        case(
            "a header beyond max_header_size (GET)",
            false,
            req("GET", &format!("X-Big: {big}\r\n"), ""),
            Refused(431),
        ),
        case(
            "a URI beyond max_header_size (POST)",
            true,
            format!(
                "POST /{{p}}/{big} HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 0\r\n\r\n"
            ),
            Refused(431),
        ),
        case(
            "a URI beyond max_header_size (GET)",
            false,
            format!("GET /{{p}}?q={big} HTTP/1.1\r\nHost: lockstep.test\r\n\r\n"),
            Refused(431),
        ),
        case(
            "300 header lines, more than pingora's 256 (POST)",
            true,
            req("POST", &format!("{many_fields}Content-Length: 0\r\n"), ""),
            Refused(400),
        ),
        case(
            "a declared body beyond max_body, refused before it is sent (POST)",
            true,
            req("POST", "Content-Length: 2000\r\n", ""),
            Refused(413),
        ),
        case(
            "a declared body beyond max_body, refused before it is sent (GET)",
            false,
            req("GET", "Content-Length: 2000\r\n", ""),
            Refused(413),
        ),
        case(
            "a chunked body growing beyond max_body (POST)",
            true,
            req("POST", te, &format!("258\r\n{chunk}\r\n258\r\n{chunk}\r\n")),
            Refused(413),
        ),
        case(
            "a 15-hex-digit chunk size with data beyond max_body (POST)",
            true,
            req("POST", te, &format!("fffffffffffffff\r\n{chunk}{chunk}")),
            Refused(413),
        ),
        case(
            "a body of exactly max_body (POST)",
            true,
            req("POST", "Content-Length: 1024\r\n", exactly_max),
            Forwarded(exactly_max),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_heads_uris_and_bodies_are_refused_before_forwarding() {
    let (mocks, backends) = start_mocks(3).await;
    let gw = start_gateway(&format!("{LIMITS}{backends}"));
    run_corpus(gw.gateway, &mocks, "s", size_corpus()).await;
    gw.stop().await;
}

/// A slow body: part of it, then nothing. The gateway reads a logical request's body whole
/// before forwarding it; after `request_timeout` (1 s here) of silence it answers `400`, closes,
/// and nothing reaches any backend. (Reads stream to the primary and are not subject to
/// `request_timeout`: pingora's own 60 s of silence per read applies, too long for this test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_body_is_refused_after_request_timeout_and_never_forwarded() {
    let (mocks, backends) = start_mocks(3).await;
    let gw = start_gateway(&format!("{LIMITS}{backends}"));
    let cases = [
        (
            "slow body, 3 of 10 bytes (POST)",
            "POST /slow1 HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 10\r\n\r\nabc",
        ),
        (
            "slow body, 3 of 10 bytes (PUT)",
            "PUT /slow2 HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 10\r\n\r\nabc",
        ),
        (
            "slow chunked body, stalled inside a chunk (POST)",
            "POST /slow3 HTTP/1.1\r\nHost: lockstep.test\r\nTransfer-Encoding: chunked\r\n\r\na\r\nabc",
        ),
    ];
    for (i, (name, raw)) in cases.into_iter().enumerate() {
        let mut wire = Wire::open(gw.gateway).await;
        wire.send(raw.as_bytes()).await;
        let sent = Instant::now();
        let r = wire
            .response(name)
            .await
            .unwrap_or_else(|| panic!("{name}: closed without an answer"));
        let waited = sent.elapsed();
        assert_eq!(
            r.status,
            400,
            "{name}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "{name}: answered after {waited:?}, request_timeout is 1s"
        );
        wire.expect_closed(name).await;
        assert_nothing_forwarded(name, &mocks, &format!("slow{}", i + 1));
    }
    gw.stop().await;
}

/// `request_timeout` bounds the silence between body bytes, not the whole body: a body
/// trickled with shorter pauses is accepted even when it takes longer in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_trickled_within_request_timeout_is_accepted() {
    let (mocks, backends) = start_mocks(3).await;
    let gw = start_gateway(&format!("{LIMITS}{backends}"));
    let name = "body trickled with 300 ms pauses (POST)";
    let mut wire = Wire::open(gw.gateway).await;
    wire.send(b"POST /trickle/body HTTP/1.1\r\nHost: lockstep.test\r\nContent-Length: 6\r\n\r\n")
        .await;
    let started = Instant::now();
    for b in b"sloths" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            arrived(&mocks, "trickle").is_empty(),
            "{name}: forwarded before the body was complete"
        );
        wire.send(&[*b]).await;
    }
    let r = wire.response(name).await.unwrap();
    assert!(started.elapsed() > Duration::from_secs(1), "{name}");
    assert_eq!(
        r.status,
        200,
        "{name}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let got = the_forwarded(name, &mocks, "trickle", true);
    assert_eq!(got.body.as_ref(), b"sloths", "{name}");
    gw.stop().await;
}

/// Slowloris: request heads trickled byte by byte. pingora 0.9.1 bounds each read of a head by
/// 60 s of silence (not configurable) and sets no deadline for the whole head, so a head
/// trickled over longer than `request_timeout` is still accepted. What must hold: other
/// clients are served meanwhile, nothing of a trickled request reaches a backend before it is
/// complete, an abandoned head reaches none, and a completed one is forwarded once, identically.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_heads_block_no_one_and_are_forwarded_only_when_complete() {
    let (mocks, backends) = start_mocks(3).await;
    let gw = start_gateway(&format!("{LIMITS}{backends}"));
    let c = client();

    // Many connections each holding half a head, and one abandoned after half a head.
    let mut idle = Vec::new();
    for i in 0..100 {
        let mut w = Wire::open(gw.gateway).await;
        w.send(format!("POST /loris-idle-{i} HTTP/1.1\r\nHost: lock").as_bytes())
            .await;
        idle.push(w);
    }
    let mut abandoned = Wire::open(gw.gateway).await;
    abandoned
        .send(b"POST /loris-abandoned HTTP/1.1\r\nHost: lockstep.test\r\nContent-Le")
        .await;
    drop(abandoned);

    let name = "slowloris: a POST head and body trickled byte by byte";
    let raw = b"POST /loris/trickled HTTP/1.1\r\nHost: lockstep.test\r\nX-Slow: yes\r\nContent-Length: 4\r\n\r\nslow";
    let mut wire = Wire::open(gw.gateway).await;
    let started = Instant::now();
    for (i, b) in raw.iter().enumerate() {
        wire.send(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(12)).await;
        if i == raw.len() / 2 {
            // Meanwhile, an ordinary client is served.
            let r = post_json(&c, format!("http://{}/other/1", gw.gateway), "{}").await;
            assert_eq!(r.status(), 200, "{name}: an ordinary request meanwhile");
        }
        if i + 1 < raw.len() {
            assert!(
                arrived(&mocks, "loris").is_empty(),
                "{name}: forwarded after {} of {} bytes",
                i + 1,
                raw.len()
            );
        }
    }
    let r = wire.response(name).await.unwrap();
    assert_eq!(
        r.status,
        200,
        "{name}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "{name}: trickled for longer than request_timeout"
    );
    let got = the_forwarded(name, &mocks, "loris", true);
    assert_eq!(got.body.as_ref(), b"slow", "{name}");
    assert_eq!(got.header("x-slow"), Some("yes"), "{name}");
    for m in &mocks {
        assert!(
            m.mock.arrived().iter().all(|u| !u.starts_with("/loris-")),
            "{name}: an incomplete head reached a backend: {:?}",
            m.mock.arrived()
        );
    }
    // The half heads are still open and unanswered: no deadline has ended them.
    for (i, w) in idle.iter().enumerate() {
        let mut probe = [0u8; 64];
        match w.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{name}: half head #{i} was answered or closed: {other:?}"),
        }
    }
    drop(idle);
    gw.stop().await;
}

//! The data listener: pingora's `ProxyHttp` for lockstep. Reads stream to the primary on
//! pingora's proxy path; logical requests are buffered, handed to the replication pipeline and
//! answered from the gateway once committed.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use lockstep_backends::{Committed, Submission};
use lockstep_classifiers::Classification;
use lockstep_config::{IdempotencyRule, InFlightPolicy, RequestKind};
use lockstep_journal::{EntryState, IdempotencyKey, RequestRecord, ResponseRecord};
use pingora::http::{HeaderNameVariant, RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use tracing::{Instrument, debug};

use crate::events::{EventFrames, stream_header};
use crate::headers::{connection_nominated, forwarded_request_headers, is_hop_by_hop};
use crate::idempotency::{fingerprint, parse_key, scoped_key};
use crate::respond::{ErrorResponse, GatewayError};
use crate::shared::{ActiveRequest, Shared};
use crate::transport::{backend_peer, path_prefix};

/// Per-request state.
#[derive(Debug)]
pub(crate) struct RequestCtx {
    classification: Option<Classification>,
    /// The primary a read was proxied to.
    primary: Option<String>,
    /// Body bytes of a read seen so far.
    body_bytes: u64,
    started: std::time::Instant,
    /// `X-Request-Id`: the client's, or one made up here; logged, forwarded and answered.
    request_id: String,
    /// Counts this request as in flight until it ends (dropped early for an event stream).
    active: Option<ActiveRequest>,
}

/// The request header that correlates a request across the client, the gateway's logs and the
/// backends.
const REQUEST_ID: &str = "x-request-id";

/// The client's request id when it is usable (visible ASCII, at most 128 bytes), else a new one.
fn request_id(header: &RequestHeader) -> (String, bool) {
    if let Some(v) = header.headers.get(REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..0x7f).contains(c)) {
            return (String::from_utf8_lossy(b).into_owned(), true);
        }
    }
    (new_request_id(), false)
}

/// The size of a request head as received: the request line and every header line.
fn head_size(header: &RequestHeader) -> u64 {
    let line = header.method.as_str().len() + path_and_query(header).len() + 12;
    let fields: usize = header
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    (line + fields) as u64
}

/// Whether the request target is one the gateway classifies and forwards as the client sent
/// it: a path (origin-form), an absolute `http` or `https` URL (pingora has checked its
/// authority against `Host`), or `*` for `OPTIONS`. pingora files any other target under `/`
/// while keeping its bytes for the primary, so the gateway would route, classify and replicate
/// another target than the one the client sent.
fn target_is_forwardable(header: &RequestHeader) -> bool {
    let raw = header.raw_path();
    let absolute = |scheme: &[u8]| {
        raw.len() > scheme.len() && raw[..scheme.len()].eq_ignore_ascii_case(scheme)
    };
    raw.starts_with(b"/")
        || (raw == b"*" && header.method == http::Method::OPTIONS)
        || absolute(b"http://")
        || absolute(b"https://")
}

/// The body length the client declared in `Content-Length`. pingora has already refused values
/// that are not numbers or that disagree; equal ones such as `5, 5` count once.
fn declared_length(header: &RequestHeader) -> Option<u64> {
    header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Why the request's `Host` makes it unfit to forward, if it does. HTTP/1.1 requires exactly
/// one (RFC 9112 section 3.2; pingora refuses duplicates). A logical request needs one whatever
/// its version, and its `Connection` header may not list it: every backend must receive the
/// client's `Host`, while a request without one would reach each backend with that backend's
/// own address.
fn host_problem(header: &RequestHeader, logical: bool) -> Option<&'static str> {
    let has_host = header.headers.contains_key(http::header::HOST);
    if !has_host && (logical || header.version == http::Version::HTTP_11) {
        return Some("the request has no Host header");
    }
    if logical
        && connection_nominated(&header.headers)
            .iter()
            .any(|n| n == "host")
    {
        return Some("the Connection header lists Host, which is forwarded to every backend");
    }
    None
}

/// 16 hex digits, unique within the process and unpredictable across processes.
fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut h = SEED.get_or_init(Default::default).build_hasher();
    h.write_u64(n);
    format!("{:016x}", h.finish() ^ n)
}

/// One of the `max_in_flight` places for logical requests; freed on drop.
struct InFlightSlot<'a>(&'a Shared);

impl<'a> InFlightSlot<'a> {
    fn take(shared: &'a Shared) -> Option<Self> {
        let limit = shared.config.gateway.max_in_flight;
        let taken = shared
            .logical_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if taken >= limit {
            shared
                .logical_in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return None;
        }
        Some(InFlightSlot(shared))
    }
}

impl Drop for InFlightSlot<'_> {
    fn drop(&mut self) {
        self.0
            .logical_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The gateway's proxy logic.
#[derive(Debug, Clone)]
pub(crate) struct GatewayProxy {
    shared: Arc<Shared>,
}

impl GatewayProxy {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        GatewayProxy { shared }
    }

    async fn handle_logical(&self, session: &mut Session, class: Classification) -> Result<()> {
        let request = match self.read_request(session).await {
            Ok(r) => r,
            // Too large, unframeable, or stalled: the rest of the connection cannot be trusted
            // to start with a request.
            Err(e) => return self.respond_error_and_close(session, &e).await,
        };
        let key = match self.idempotency_key(session.req_header(), &class, &request) {
            Ok(k) => k,
            Err(e) => return self.respond_error(session, &e).await,
        };
        let compare = self.shared.classifier.compare_rule(&class).clone();
        let lane = class.lane.as_str().to_owned();
        if let Some(raw) = session
            .req_header()
            .headers
            .get(crate::transactions::HEADER)
        {
            let header = match crate::transactions::parse_header(raw.as_bytes()) {
                Ok(h) => h,
                Err(e) => return self.respond_error(session, &e).await,
            };
            let submission = Submission {
                lane,
                request,
                compare,
                idempotency: None,
                hold: None,
                transaction: None,
            };
            return self
                .submit_in_transaction(session, &class, header, submission)
                .await;
        }
        let Some(key) = key else {
            let submission = Submission {
                lane,
                request,
                compare,
                idempotency: None,
                hold: None,
                transaction: None,
            };
            return self.submit(session, submission).await;
        };
        let header = &self.shared.config.idempotency.header;
        loop {
            let claim = match self.shared.in_flight.claim(&key.scoped) {
                Ok(claim) => claim,
                Err(mut waiting) => {
                    if self.shared.config.idempotency.in_flight == InFlightPolicy::Reject {
                        let e = GatewayError::IdempotencyKeyInFlight {
                            header: header.clone(),
                        };
                        return self.respond_error(session, &e).await;
                    }
                    // The channel closes when the original request committed or failed.
                    let _ = waiting.changed().await;
                    continue;
                }
            };
            let found = match self.shared.replicator.journal().find_key(&key.scoped).await {
                Ok(found) => found,
                Err(e) => {
                    let e = GatewayError::from(lockstep_backends::ReplicationError::Journal(e));
                    return self.respond_error(session, &e).await;
                }
            };
            let ttl = self.shared.config.idempotency.ttl;
            let now = self.shared.replicator.clock().now();
            match found {
                Some(entry) if entry.time + ttl > now => {
                    if entry
                        .idempotency
                        .as_ref()
                        .is_some_and(|k| k.fingerprint != key.fingerprint)
                    {
                        let e = GatewayError::IdempotencyKeyReused {
                            header: header.clone(),
                        };
                        return self.respond_error(session, &e).await;
                    }
                    match entry.state {
                        EntryState::Committed(response) => {
                            let primary = self.shared.replicator.pool().primary().name.clone();
                            let replay = Committed {
                                seq: entry.seq,
                                response,
                                primary,
                                refused: false,
                            };
                            return self.respond_committed(session, replay, true).await;
                        }
                        EntryState::Pending | EntryState::Answered(_) => {
                            // Still being resumed after a restart.
                            let e = GatewayError::IdempotencyKeyInFlight {
                                header: header.clone(),
                            };
                            return self.respond_error(session, &e).await;
                        }
                        // Never committed, and a backend applied it (a recovery can abort a
                        // request the primary answered) or may have: running it again could
                        // apply it twice, so it is not run again.
                        EntryState::Aborted(_) if entry.maybe_applied() => {
                            let e = GatewayError::IdempotencyOutcomeUnknown {
                                header: header.clone(),
                                seq: entry.seq,
                            };
                            return self.respond_error(session, &e).await;
                        }
                        // Never committed and never applied anywhere: the request may run again.
                        EntryState::Aborted(_) => {}
                    }
                }
                _ => {}
            }
            let submission = Submission {
                lane,
                request,
                compare,
                idempotency: Some(key),
                hold: Some(Box::new(claim)),
                transaction: None,
            };
            return self.submit(session, submission).await;
        }
    }

    async fn submit(&self, session: &mut Session, submission: Submission) -> Result<()> {
        let started = std::time::Instant::now();
        match self.shared.replicator.submit(submission).await {
            Ok(committed) if committed.refused => {
                debug!(
                    seq = committed.seq,
                    status = committed.response.status,
                    "refused by the primary"
                );
                self.respond_committed(session, committed, false).await
            }
            Ok(committed) => {
                metrics::histogram!("lockstep_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                debug!(seq = committed.seq, "committed");
                self.respond_committed(session, committed, false).await
            }
            Err(e) => self.respond_error(session, &GatewayError::from(e)).await,
        }
    }

    /// A request of a transaction: joins (or starts) it; with `; commit`, ends it.
    async fn submit_in_transaction(
        &self,
        session: &mut Session,
        class: &Classification,
        header: crate::transactions::TxnHeader,
        submission: Submission,
    ) -> Result<()> {
        let shared = &self.shared;
        let scope = crate::transactions::scope(shared, &session.req_header().headers);
        // A transaction keeps the mode of its first request.
        let mode = shared
            .replicator
            .open_mode(&scope, &header.id)
            .unwrap_or_else(|| {
                let ack = class
                    .route
                    .as_ref()
                    .and_then(|m| shared.classifier.rules().get(m.index))
                    .and_then(|r| r.transaction_ack)
                    .unwrap_or(shared.config.transactions.ack);
                crate::transactions::mode(ack)
            });
        let key = lockstep_backends::Replicator::transaction_key(mode, &scope, &header.id);
        let started = std::time::Instant::now();
        match shared
            .replicator
            .submit_in_transaction(submission, &header.id, &key, mode, header.commit)
            .await
        {
            Ok(reply) => {
                if !reply.tentative {
                    metrics::histogram!("lockstep_commit_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                let mut extra = vec![("Lockstep-Transaction", header.id.clone())];
                if reply.tentative {
                    extra.push(("Lockstep-Tentative", "true".to_owned()));
                }
                if let Some(outcome) = &reply.outcome {
                    extra.push(("Lockstep-Transaction-Outcome", outcome.outcome.to_owned()));
                }
                self.respond_with(session, reply.committed, false, &extra)
                    .await
            }
            Err(e) => self.respond_error(session, &GatewayError::from(e)).await,
        }
    }

    /// `POST {prefix}/transactions/ID/commit` or `.../abort`.
    async fn end_transaction(&self, session: &mut Session, id: &str, commit: bool) -> Result<()> {
        if let Err(e) = crate::transactions::check_id(id) {
            return self.respond_error(session, &e).await;
        }
        let _ = session.drain_request_body().await;
        let shared = &self.shared;
        let scope = crate::transactions::scope(shared, &session.req_header().headers);
        let key = match shared.replicator.find_transaction_key(&scope, id).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                let e = GatewayError::from(lockstep_backends::TxnError::Unknown(id.to_owned()));
                return self.respond_error(session, &e).await;
            }
            Err(e) => return self.respond_error(session, &GatewayError::from(e)).await,
        };
        let outcome = if commit {
            shared.replicator.commit_transaction(&key).await
        } else {
            shared
                .replicator
                .abort_transaction(&key, "aborted by the client")
                .await
        };
        match outcome {
            Ok(outcome) => {
                let body = serde_json::to_vec(&outcome).expect("outcomes serialize");
                let mut header = ResponseHeader::build(200, Some(4))?;
                header.insert_header("Content-Type", "application/json")?;
                header.insert_header("Content-Length", body.len().to_string())?;
                header.insert_header(
                    "Lockstep-Primary",
                    shared.replicator.pool().primary().name.as_str(),
                )?;
                self.close_if_stopping(session);
                session
                    .write_response_header(Box::new(header), false)
                    .await?;
                session
                    .write_response_body(Some(Bytes::from(body)), true)
                    .await?;
                Ok(())
            }
            Err(e) => self.respond_error(session, &GatewayError::from(e)).await,
        }
    }

    /// The request's idempotency identity, if it carries a key and the route honours keys.
    fn idempotency_key(
        &self,
        header: &RequestHeader,
        class: &Classification,
        request: &RequestRecord,
    ) -> Result<Option<IdempotencyKey>, GatewayError> {
        let config = &self.shared.config.idempotency;
        if class.idempotency == IdempotencyRule::Off {
            return Ok(None);
        }
        let Some(raw) = header.headers.get(config.header.as_str()) else {
            return match class.idempotency {
                IdempotencyRule::Required => Err(GatewayError::IdempotencyKeyRequired {
                    header: config.header.clone(),
                }),
                _ => Ok(None),
            };
        };
        let key = parse_key(&config.header, raw.as_bytes())?;
        Ok(Some(IdempotencyKey {
            scoped: scoped_key(&config.scope_headers, &header.headers, &key),
            fingerprint: fingerprint(&request.method, &request.uri, &request.body),
        }))
    }

    /// Reads the whole request (body up to `max_body`) into a record for the journal.
    async fn read_request(&self, session: &mut Session) -> Result<RequestRecord, GatewayError> {
        // A declared length over the limit was refused in `request_filter`.
        let limit = self.shared.config.gateway.max_body;
        session.set_read_timeout(Some(self.shared.config.gateway.request_timeout));
        let expects_continue = session
            .req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue {
            session
                .write_continue_response()
                .await
                .map_err(|e| GatewayError::BadRequest(format!("could not answer Expect: {e}")))?;
        }
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > limit {
                        return Err(GatewayError::BodyTooLarge { limit });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(GatewayError::BadRequest(format!(
                        "could not read the request body: {e}"
                    )));
                }
            }
        }
        let header = session.req_header();
        let mut names = Vec::with_capacity(header.headers.len());
        let _ = header.map(|name, _| {
            names.push(match name {
                HeaderNameVariant::Case(c) => String::from_utf8_lossy(c.as_slice()).into_owned(),
                HeaderNameVariant::Titled(t) => t.to_owned(),
            });
            Ok(())
        });
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        Ok(RequestRecord {
            method: header.method.as_str().to_owned(),
            uri: path_and_query(header).to_owned(),
            headers: forwarded_request_headers(&header.headers, names.into_iter(), client),
            body: body.freeze(),
        })
    }

    /// While the process stops or hands over, every answer closes its connection, so that
    /// clients open new ones (to the gateway that takes over) instead of reusing one that is
    /// about to go away.
    /// A read's answer from `primary`: its own origin in the URL headers becomes the client's
    /// (see `crate::origin`).
    fn rewrite_own_origin(&self, session: &Session, upstream: &mut ResponseHeader, primary: &str) {
        use crate::origin::{REWRITTEN, client_origin, own_origins, rewrite};
        if !REWRITTEN.iter().any(|h| upstream.headers.contains_key(*h)) {
            return;
        }
        let Some(backend) = self.shared.replicator.pool().get(primary) else {
            return;
        };
        let host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        let Some(client) = client_origin(self.shared.config.gateway.public_url.as_ref(), host)
        else {
            return;
        };
        let own = own_origins(&backend.url);
        for name in REWRITTEN {
            let values: Vec<String> = upstream
                .headers
                .get_all(*name)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            if values.is_empty() {
                continue;
            }
            let rewritten: Vec<String> = values
                .iter()
                .map(|v| rewrite(v, &own, &client).unwrap_or_else(|| v.clone()))
                .collect();
            if rewritten != values {
                let _ = upstream.remove_header(*name);
                for v in rewritten {
                    let _ = upstream.append_header(*name, v);
                }
            }
        }
    }

    fn close_if_stopping(&self, session: &mut Session) {
        if self
            .shared
            .closing
            .load(std::sync::atomic::Ordering::Acquire)
        {
            session.set_keepalive(None);
        }
    }

    async fn respond_committed(
        &self,
        session: &mut Session,
        committed: Committed,
        replayed: bool,
    ) -> Result<()> {
        self.respond_with(session, committed, replayed, &[]).await
    }

    /// A read while the primary's ids are not the clients' (a promoted copy of a service that
    /// mints them): sent through the replication transport, in the primary's ids, and answered
    /// in the clients'.
    async fn handle_translated_read(
        &self,
        session: &mut Session,
        class: Classification,
    ) -> Result<()> {
        let request = match self.read_request(session).await {
            Ok(r) => r,
            Err(e) => return self.respond_error_and_close(session, &e).await,
        };
        let replicator = &self.shared.replicator;
        let primary = replicator.pool().primary();
        let timeout = replicator.config().primary_timeout;
        let answer = match replicator
            .send_translated(&primary, &request, &[], timeout)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                let error = GatewayError::Unavailable(format!(
                    "the primary {} did not answer: {e}",
                    primary.name
                ));
                return self.respond_error(session, &error).await;
            }
        };
        let rule = self.shared.classifier.compare_rule(&class);
        let response = replicator.answer_to_canonical(&primary, rule, answer);
        self.write_record(session, &response, None, &primary.name, false, &[])
            .await
    }

    /// The committed response, with the gateway's headers and `extra`.
    async fn respond_with(
        &self,
        session: &mut Session,
        committed: Committed,
        replayed: bool,
        extra: &[(&'static str, String)],
    ) -> Result<()> {
        let seq = (!committed.refused).then_some(committed.seq);
        self.write_record(
            session,
            &committed.response,
            seq,
            &committed.primary,
            replayed,
            extra,
        )
        .await
    }

    /// Writes a whole response: its end-to-end headers, the gateway's (`Lockstep-Sequence` when
    /// `seq` is given), then `extra`.
    async fn write_record(
        &self,
        session: &mut Session,
        response: &ResponseRecord,
        seq: Option<u64>,
        primary: &str,
        replayed: bool,
        extra: &[(&'static str, String)],
    ) -> Result<()> {
        self.close_if_stopping(session);
        let mut header = ResponseHeader::build(response.status, Some(response.headers.len() + 3))?;
        let nominated: Vec<String> = response
            .header("connection")
            .map(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        for h in &response.headers {
            if !is_hop_by_hop(&h.name, &nominated) {
                header.append_header(h.name.clone(), h.value.as_ref())?;
            }
        }
        header.insert_header("Content-Length", response.body.len().to_string())?;
        // A refused request has no place in the history the client could wait for.
        if let Some(seq) = seq {
            header.insert_header("Lockstep-Sequence", seq.to_string())?;
        }
        header.insert_header("Lockstep-Primary", primary)?;
        if replayed {
            header.insert_header("Idempotent-Replayed", "true")?;
            metrics::counter!("lockstep_idempotent_replays_total").increment(1);
        }
        if let Some(id) = session.req_header().headers.get(REQUEST_ID).cloned() {
            header.insert_header(REQUEST_ID, id)?;
        }
        for (name, value) in extra {
            header.insert_header(*name, value.as_str())?;
        }
        let empty = response.body.is_empty();
        session
            .write_response_header(Box::new(header), empty)
            .await?;
        if !empty {
            session
                .write_response_body(Some(response.body.clone()), true)
                .await?;
        }
        Ok(())
    }

    /// Topology events as Server-Sent Events, so clients learn of a new primary; ends when the
    /// client leaves or the gateway shuts down.
    async fn stream_events(&self, session: &mut Session) {
        let mut frames = EventFrames::new(&self.shared.replicator);
        let primary = self.shared.replicator.pool().primary().name.clone();
        let Some(header) = stream_header(Some(&primary)) else {
            return;
        };
        session.set_keepalive(None);
        if session
            .write_response_header(Box::new(header), false)
            .await
            .is_err()
        {
            return;
        }
        while let Some(frame) = frames.next().await {
            if session.is_process_shutting_down()
                || session
                    .write_response_body(Some(frame), false)
                    .await
                    .is_err()
            {
                return;
            }
        }
    }

    async fn respond_error(&self, session: &mut Session, error: &GatewayError) -> Result<()> {
        // An unread body would desynchronize the connection; drain it unless it is the problem.
        if matches!(
            error,
            GatewayError::BodyTooLarge { .. } | GatewayError::HeaderTooLarge { .. }
        ) {
            return self.respond_error_and_close(session, error).await;
        }
        debug!(%error, "answering from the gateway");
        let _ = session.drain_request_body().await;
        write_error(
            session,
            &error.response(),
            &self.shared.replicator.pool().primary().name,
        )
        .await
    }

    /// Answers `error` and closes the connection without reading the rest of the request.
    async fn respond_error_and_close(
        &self,
        session: &mut Session,
        error: &GatewayError,
    ) -> Result<()> {
        debug!(%error, "answering from the gateway and closing the connection");
        session.set_keepalive(None);
        write_error(
            session,
            &error.response(),
            &self.shared.replicator.pool().primary().name,
        )
        .await
    }
}

async fn write_error(session: &mut Session, response: &ErrorResponse, primary: &str) -> Result<()> {
    if session.is_process_shutting_down() {
        session.set_keepalive(None);
    }
    let mut header = ResponseHeader::build(response.status, Some(4))?;
    header.insert_header("Content-Type", "application/json")?;
    header.insert_header("Content-Length", response.body.len().to_string())?;
    if let Some(secs) = response.retry_after {
        header.insert_header("Retry-After", secs.to_string())?;
    }
    header.insert_header("Lockstep-Primary", primary)?;
    if let Some(id) = session.req_header().headers.get(REQUEST_ID).cloned() {
        header.insert_header(REQUEST_ID, id)?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(response.body.clone())), true)
        .await
}

fn path_and_query(header: &RequestHeader) -> &str {
    header
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            classification: None,
            primary: None,
            body_bytes: 0,
            started: std::time::Instant::now(),
            request_id: String::new(),
            active: Some(ActiveRequest::new(&self.shared)),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (id, from_client) = request_id(session.req_header());
        if !from_client {
            session.req_header_mut().insert_header(REQUEST_ID, &id)?;
        }
        ctx.request_id = id;
        let header = session.req_header();
        let limit = self.shared.config.gateway.max_header_size;
        let size = head_size(header);
        if size > limit {
            self.respond_error(session, &GatewayError::HeaderTooLarge { size, limit })
                .await?;
            return Ok(true);
        }
        if !target_is_forwardable(header) {
            // A malformed request line: answered and closed, as pingora does with the others.
            let e = GatewayError::BadRequest(
                "the request target must be a path or an absolute http URL".to_owned(),
            );
            self.respond_error_and_close(session, &e).await?;
            return Ok(true);
        }
        // Refused before anything is forwarded: a read streams to the primary as it arrives.
        let limit = self.shared.config.gateway.max_body;
        if declared_length(header).is_some_and(|n| n > limit) {
            self.respond_error(session, &GatewayError::BodyTooLarge { limit })
                .await?;
            return Ok(true);
        }
        let pq = path_and_query(header);
        let prefix = &self.shared.config.gateway.lockstep_prefix;
        if pq
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            let path = header.uri.path().to_owned();
            if path == format!("{prefix}/events") && header.method == http::Method::GET {
                // A stream lasts until the client leaves: it does not hold a stop back.
                ctx.active = None;
                self.stream_events(session).await;
                return Ok(true);
            }
            let rest = path[prefix.len()..].trim_matches('/').to_owned();
            let parts: Vec<&str> = rest.split('/').collect();
            if let ["transactions", id, action @ ("commit" | "abort")] = parts.as_slice() {
                if header.method != http::Method::POST {
                    self.respond_error(
                        session,
                        &GatewayError::BadRequest(format!(
                            "{path}: a transaction is ended with POST"
                        )),
                    )
                    .await?;
                    return Ok(true);
                }
                let (id, commit) = ((*id).to_owned(), *action == "commit");
                self.end_transaction(session, &id, commit).await?;
                return Ok(true);
            }
            self.respond_error(session, &GatewayError::UnknownGatewayPath { path })
                .await?;
            return Ok(true);
        }
        let class = self
            .shared
            .classifier
            .classify(header.method.as_str(), pq, &header.headers);
        ctx.classification = Some(class.clone());
        if let Some(problem) = host_problem(header, class.kind == RequestKind::Logical) {
            let e = GatewayError::BadRequest(problem.to_owned());
            self.respond_error(session, &e).await?;
            return Ok(true);
        }
        match class.kind {
            RequestKind::Read if !self.shared.replicator.pool().primary().ids.is_identity() => {
                // The primary is a promoted copy whose ids differ from the clients': the read
                // is translated both ways, so it is buffered instead of streamed.
                self.handle_translated_read(session, class).await?;
                Ok(true)
            }
            RequestKind::Read => Ok(false),
            RequestKind::Logical => {
                let Some(_slot) = InFlightSlot::take(&self.shared) else {
                    let limit = self.shared.config.gateway.max_in_flight;
                    self.respond_error(session, &GatewayError::Overloaded { limit })
                        .await?;
                    return Ok(true);
                };
                let span = tracing::info_span!("request", id = %ctx.request_id);
                self.handle_logical(session, class).instrument(span).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Reads stream to the primary; they obey the same body limit as writes.
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if ctx.body_bytes > self.shared.config.gateway.max_body {
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                "request body over gateway.max_body",
            );
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let primary = self.shared.replicator.pool().primary();
        ctx.primary = Some(primary.name.clone());
        // Peers are built once per backend URL: resolving the address on every read would cost
        // more than the proxying itself.
        if let Some(peer) = self.shared.read_peers.get(primary.url.as_str()) {
            return Ok(Box::new(peer.clone()));
        }
        let peer = backend_peer(&primary.url, &self.shared.read_timeouts)
            .map_err(|e| Error::explain(ErrorType::ConnectError, e.to_string()))?;
        self.shared
            .read_peers
            .insert(primary.url.to_string(), peer.clone());
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(ip) = client {
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip.to_string(),
            };
            upstream.insert_header("X-Forwarded-For", xff)?;
            let node = if ip.is_ipv6() {
                format!("\"[{ip}]\"")
            } else {
                ip.to_string()
            };
            let forwarded = match upstream
                .headers
                .get("forwarded")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, for={node};proto=http"),
                None => format!("for={node};proto=http"),
            };
            let forwarded = match session
                .req_header()
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
            {
                Some(host) => format!("{forwarded};host=\"{}\"", host.replace('"', "")),
                None => forwarded,
            };
            upstream.insert_header("Forwarded", forwarded)?;
        }
        let name = ctx.primary.as_deref().unwrap_or_default();
        if let Some(backend) = self.shared.replicator.pool().get(name) {
            let prefix = path_prefix(&backend.url);
            if !prefix.is_empty() {
                let uri = format!("{prefix}{}", path_and_query(upstream));
                upstream.set_uri(
                    uri.parse()
                        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "bad uri"))?,
                );
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(primary) = &ctx.primary {
            upstream.insert_header("Lockstep-Primary", primary.as_str())?;
            self.rewrite_own_origin(session, upstream, primary);
        }
        upstream.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        self.close_if_stopping(session);
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let class = match ctx.classification.as_ref().map(|c| c.kind) {
            Some(RequestKind::Logical) => "logical",
            Some(RequestKind::Read) => "read",
            None => "gateway",
        };
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let outcome = match status {
            0 => "dropped",
            400..=499 => "rejected",
            500.. => "failed",
            _ if class == "read" => "proxied",
            _ if class == "logical" => "committed",
            _ => "answered",
        };
        metrics::counter!("lockstep_requests_total", "class" => class, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("lockstep_request_duration_seconds", "class" => class)
            .record(ctx.started.elapsed().as_secs_f64());
        debug!(
            target: "lockstep::access",
            id = %ctx.request_id,
            class,
            method = %session.req_header().method,
            path = %session.req_header().uri.path(),
            status,
            micros = ctx.started.elapsed().as_micros() as u64,
            "request"
        );
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let gateway_error = match e.etype() {
            ErrorType::HTTPStatus(code) if *code == 413 => GatewayError::BodyTooLarge {
                limit: self.shared.config.gateway.max_body,
            },
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::BindError
            | ErrorType::SocketError => GatewayError::Unavailable(format!(
                "the primary {} is unreachable: {e}",
                ctx.primary.as_deref().unwrap_or("?")
            )),
            _ if e.esource() == &ErrorSource::Upstream => GatewayError::BadGateway(e.to_string()),
            _ if e.esource() == &ErrorSource::Downstream => {
                let code = match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                };
                if code == 400 {
                    let r = GatewayError::BadRequest(e.to_string()).response();
                    let _ = write_error(session, &r, "").await;
                }
                return FailToProxy {
                    error_code: code,
                    can_reuse_downstream: false,
                };
            }
            _ => GatewayError::BadGateway(e.to_string()),
        };
        let response = gateway_error.response();
        let primary = self.shared.replicator.pool().primary().name.clone();
        session.set_keepalive(None);
        let _ = write_error(session, &response, &primary).await;
        FailToProxy {
            error_code: response.status,
            can_reuse_downstream: false,
        }
    }
}

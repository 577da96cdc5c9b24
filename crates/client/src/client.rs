//! [`Client`]: sends a [`PreparedRequest`] and returns its [`Ledger`], never an error.
//!
//! One request, in order: take a pooled connection or open one (timed), write the request,
//! wait for the headers (rate limits, server queue time, cache hit), then read the body.
//! A stream is read frame by frame; each read is stamped with [`Instant::now`] as it
//! arrives, cut into SSE events (stamped with their first byte's read), and only then are
//! the events' JSON decoded. Everything is recorded into the ledger owned by this call: no
//! lock, channel or shared counter is touched per token. The connection goes back to the
//! pool only when its body was read to the end.
//!
//! Retrying is the caller's policy. The one exception is below HTTP: a pooled connection
//! that turns out to be closed before the request could be written is replaced by a fresh
//! one, since nothing reached the server.

use std::future::poll_fn;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::header::CONTENT_TYPE;
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::task::JoinSet;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;

use crate::error::{ClientError, ErrorClass, TimeoutPhase};
use crate::headers;
use crate::ledger::{Completion, ConnTiming, EventStamp, Ledger};
use crate::request::{PreparedRequest, WireDialect};
use crate::response::{decode_body, error_message, status_error};
use crate::stream::classify::StreamState;
use crate::stream::framing::{Framed, StampedFramer};
use crate::target::{Endpoint, PoolKey};
use crate::transport::connect::{Conn, describe, open};
use crate::transport::pool::Pool;

/// The largest error body read (the rest is not needed for the message).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The largest non-streamed response body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long a pooled connection may take to become ready before another is used.
pub(crate) const POOLED_READY_WAIT: Duration = Duration::from_millis(250);
/// After the terminal event, how long to wait for the body's end (so the connection can
/// be reused) before giving up on the connection. The request has succeeded either way.
const AFTER_TERMINAL_GRACE: Duration = Duration::from_millis(250);

/// Which CA certificates verify TLS servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRoots {
    /// Trust the Mozilla roots compiled in (`webpki-roots`).
    pub webpki: bool,
    /// Also trust the certificates of this PEM file (a private CA, a test CA).
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for TlsRoots {
    fn default() -> Self {
        TlsRoots {
            webpki: true,
            extra_ca_file: None,
        }
    }
}

/// How a [`Client`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Total time for one request, connection to last byte (default 60 s).
    pub timeout: Duration,
    /// Time to resolve and connect a new connection (default 10 s; the total timeout
    /// still applies).
    pub connect_timeout: Duration,
    /// Idle connections kept per host (default 256).
    pub max_idle_per_host: usize,
    /// TLS trust roots.
    pub tls_roots: TlsRoots,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_idle_per_host: 256,
            tls_roots: TlsRoots::default(),
        }
    }
}

struct Inner {
    options: ClientOptions,
    tls: TlsConnector,
    pool: Pool,
}

/// Sends requests and records them. Cheap to clone: clones share the connection pools.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn tls_config(roots: &TlsRoots) -> Result<ClientConfig, ClientError> {
    let mut store = rustls::RootCertStore::empty();
    if roots.webpki {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &roots.extra_ca_file {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ClientError::Tls(format!("reading CA file '{shown}': {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Tls(format!("reading CA file '{shown}': {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Tls(format!(
                "CA file '{shown}' holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            )));
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("CA file '{shown}': {e}")))?;
        }
    }
    if store.is_empty() {
        return Err(ClientError::Tls(
            "no trust roots: enable the webpki roots or give a CA file".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How reading a body ended.
enum BodyEnd {
    /// The body ended cleanly: the connection can be reused.
    Complete,
    /// The body failed or timed out.
    Failed(ErrorClass),
    /// The stream's terminal event came but the body did not end in time after it.
    Abandoned,
}

impl Client {
    /// A client with the given options. Fails only when the TLS roots cannot be loaded.
    pub fn new(options: ClientOptions) -> Result<Client, ClientError> {
        let tls = TlsConnector::from(Arc::new(tls_config(&options.tls_roots)?));
        Ok(Client {
            inner: Arc::new(Inner {
                pool: Pool::new(options.max_idle_per_host),
                tls,
                options,
            }),
        })
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn tls(&self) -> &TlsConnector {
        &self.inner.tls
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Idle pooled connections to `endpoint`.
    pub fn idle_connections(&self, endpoint: &Endpoint) -> usize {
        self.inner.pool.idle(endpoint.pool_key())
    }

    /// Opens `n` connections to `endpoint` concurrently and pools them, so the first
    /// requests of a run do not pay connection setup (metrics.md §1.2: warm-up should
    /// pre-open the pool). Returns how many were pooled (at most `max_idle_per_host`), or
    /// the first error when none could be opened.
    pub async fn prewarm(&self, endpoint: &Endpoint, n: usize) -> Result<usize, ErrorClass> {
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            let client = self.clone();
            let key = endpoint.pool_key().clone();
            tasks.spawn(async move {
                let now = Instant::now();
                let deadline = now + client.inner.options.timeout;
                let connect_deadline = deadline.min(now + client.inner.options.connect_timeout);
                let mut timing = ConnTiming::default();
                let mut conn = open(
                    &key,
                    &client.inner.tls,
                    deadline,
                    connect_deadline,
                    &mut timing,
                )
                .await?;
                ready(&mut conn, connect_deadline).await?;
                Ok::<_, ErrorClass>(conn)
            });
        }
        let mut pooled = 0;
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(conn)) => {
                    if self.inner.pool.put(endpoint.pool_key(), conn) {
                        pooled += 1;
                    }
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error
                        .get_or_insert(ErrorClass::Connect(format!("opening task failed: {e}")));
                }
            }
        }
        match first_error {
            Some(e) if pooled == 0 && n > 0 => Err(e),
            _ => Ok(pooled),
        }
    }

    /// Sends `req` and records everything about it. `intended` is the time the load
    /// schedule meant it to go (`t_sched`); pass `Instant::now()` when there is none.
    ///
    /// Never fails: a failure is the ledger's [`Ledger::outcome`].
    pub async fn send(&self, req: &PreparedRequest, intended: Instant) -> Ledger {
        let dispatched = Instant::now();
        let mut ledger = Ledger::new(req.endpoint().api(), intended, dispatched);
        ledger.input_estimate = req.input_estimate();
        let deadline = dispatched + self.inner.options.timeout;
        let mut end = None;
        let outcome = self.exchange(req, &mut ledger, deadline, &mut end).await;
        ledger.end = end.unwrap_or_else(Instant::now);
        if ledger.usage.is_some_and(|u| u.cached_input > 0) {
            ledger.cache_hit = true;
        }
        ledger.outcome = outcome;
        ledger
    }

    /// A ready connection: pooled if one is, else new. Fills `ledger.conn`.
    async fn checkout(
        &self,
        key: &PoolKey,
        ledger: &mut Ledger,
        deadline: Instant,
        connect_deadline: Instant,
        fresh_only: bool,
    ) -> Result<Conn, ErrorClass> {
        if !fresh_only {
            while let Some(mut conn) = self.inner.pool.take(key) {
                let wait = connect_deadline.min(Instant::now() + POOLED_READY_WAIT);
                if ready(&mut conn, wait).await.is_ok() {
                    ledger.conn = ConnTiming {
                        reused: true,
                        rtt_estimate: Some(conn.rtt),
                        ..ConnTiming::default()
                    };
                    return Ok(conn);
                }
            }
        }
        ledger.conn = ConnTiming::default();
        let mut conn = open(
            key,
            &self.inner.tls,
            deadline,
            connect_deadline,
            &mut ledger.conn,
        )
        .await?;
        ready(&mut conn, connect_deadline).await?;
        Ok(conn)
    }

    async fn exchange(
        &self,
        req: &PreparedRequest,
        ledger: &mut Ledger,
        deadline: Instant,
        end: &mut Option<Instant>,
    ) -> Result<Completion, ErrorClass> {
        let key = req.endpoint().pool_key();
        let connect_deadline = deadline.min(ledger.dispatched + self.inner.options.connect_timeout);
        let mut fresh_only = false;
        let (conn, response) = loop {
            let mut conn = self
                .checkout(key, ledger, deadline, connect_deadline, fresh_only)
                .await?;
            ledger.connected = Some(Instant::now());
            let http = req.to_http().map_err(ErrorClass::Protocol)?;
            let writes = conn.stamp.token();
            match timeout_at(deadline.into(), conn.sender.try_send_request(http)).await {
                Err(_) => {
                    return Err(ErrorClass::Timeout {
                        phase: TimeoutPhase::Headers,
                    });
                }
                Ok(Ok(response)) => {
                    ledger.headers_at = Some(Instant::now());
                    ledger.request_written = conn.stamp.written_since(writes);
                    break (conn, response);
                }
                Ok(Err(mut e)) => {
                    // The pooled connection closed before the request went out: nothing
                    // reached the server, so a fresh connection may try once.
                    if ledger.conn.reused && !fresh_only && e.take_message().is_some() {
                        fresh_only = true;
                        continue;
                    }
                    return Err(before_headers_error(e.error()));
                }
            }
        };

        let status = response.status().as_u16();
        ledger.status = Some(status);
        let h = response.headers();
        ledger.rate_limits = headers::rate_limit_snapshot(h, SystemTime::now());
        ledger.server_queue = headers::server_queue(h);
        ledger.cache_hit = headers::cache_hit_header(h);
        ledger.request_id = headers::request_id(h);
        let sse = h
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .get(..17)
                    .is_some_and(|p| p.eq_ignore_ascii_case("text/event-stream"))
            });
        let mut body = response.into_body();

        if !(200..300).contains(&status) {
            let (bytes, how) = read_all(&mut body, ledger, deadline, MAX_ERROR_BODY).await;
            *end = Some(Instant::now());
            if matches!(how, BodyEnd::Complete) {
                self.inner.pool.put(key, conn);
            }
            return Err(status_error(
                status,
                error_message(&bytes),
                ledger.rate_limits.retry_after,
            ));
        }

        if sse {
            ledger.streamed = true;
            let (outcome, how) = read_stream(&mut body, req.dialect(), ledger, deadline, end).await;
            if matches!(how, BodyEnd::Complete) {
                self.inner.pool.put(key, conn);
            }
            return outcome;
        }

        let (bytes, how) = read_all(&mut body, ledger, deadline, MAX_BODY).await;
        *end = Some(Instant::now());
        match how {
            BodyEnd::Complete => {
                self.inner.pool.put(key, conn);
            }
            BodyEnd::Failed(class) => return Err(class),
            BodyEnd::Abandoned => {}
        }
        let decoded = decode_body(req.dialect(), &bytes);
        ledger.text = decoded.text;
        ledger.usage = decoded.usage;
        decoded.outcome
    }
}

/// Waits until `conn` can take a request.
pub(crate) async fn ready(conn: &mut Conn, deadline: Instant) -> Result<(), ErrorClass> {
    match timeout_at(deadline.into(), conn.sender.ready()).await {
        Err(_) => Err(ErrorClass::Timeout {
            phase: TimeoutPhase::Connect,
        }),
        Ok(Err(e)) => Err(ErrorClass::Reset(format!(
            "connection closed before use: {}",
            describe(&e)
        ))),
        Ok(Ok(())) => Ok(()),
    }
}

/// The class of a failure between writing the request and receiving the headers.
pub(crate) fn before_headers_error(e: &hyper::Error) -> ErrorClass {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        ErrorClass::Protocol(format!("invalid HTTP response: {}", describe(e)))
    } else {
        ErrorClass::Reset(format!("before the response headers: {}", describe(e)))
    }
}

/// Polls the next body frame, also reporting whether the body had to wait for the
/// socket (a new read) rather than answering from bytes already buffered.
async fn next_frame(
    body: &mut Incoming,
) -> (
    Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>,
    bool,
) {
    let mut waited = false;
    let frame = poll_fn(|cx| {
        let polled = Pin::new(&mut *body).poll_frame(cx);
        if polled.is_pending() {
            waited = true;
        }
        polled
    })
    .await;
    (frame, waited)
}

/// Reads a whole body of at most `limit` bytes, stamping the first byte.
async fn read_all(
    body: &mut Incoming,
    ledger: &mut Ledger,
    deadline: Instant,
    limit: usize,
) -> (Vec<u8>, BodyEnd) {
    let mut bytes = Vec::new();
    if let Some(hint) = body.size_hint().exact() {
        bytes.reserve(usize::try_from(hint).unwrap_or(0).min(limit));
    }
    loop {
        let next = timeout_at(deadline.into(), body.frame()).await;
        let now = Instant::now();
        match next {
            Err(_) => {
                let phase = TimeoutPhase::Body;
                return (bytes, BodyEnd::Failed(ErrorClass::Timeout { phase }));
            }
            Ok(None) => return (bytes, BodyEnd::Complete),
            Ok(Some(Err(e))) => {
                let class = ErrorClass::Reset(format!("reading the body: {}", describe(&e)));
                return (bytes, BodyEnd::Failed(class));
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                ledger.first_byte.get_or_insert(now);
                if bytes.len() + data.len() > limit {
                    let class = ErrorClass::Protocol(format!(
                        "the response body is larger than {limit} bytes"
                    ));
                    return (bytes, BodyEnd::Failed(class));
                }
                bytes.extend_from_slice(&data);
            }
        }
    }
}

/// Reads an SSE body into the ledger's events, text and usage. The hot path.
async fn read_stream(
    body: &mut Incoming,
    dialect: WireDialect,
    ledger: &mut Ledger,
    deadline: Instant,
    end: &mut Option<Instant>,
) -> (Result<Completion, ErrorClass>, BodyEnd) {
    let mut framer = StampedFramer::new();
    let mut state = StreamState::new(dialect);
    let mut framed: Vec<Framed> = Vec::new();
    // Reads are numbered; an event completed in the same read as the previous event is
    // "coalesced". A frame hyper hands over without waiting on the socket belongs to the
    // same read as the frame before it.
    let mut read_no: u64 = 0;
    let mut last_event_read: Option<u64> = None;
    // One timer for the whole body, reset only when the deadline moves: a fresh
    // `timeout_at` per frame would insert into and remove from tokio's timer wheel for
    // every event, a measurable share of the hot path at thousands of streams.
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    let how = loop {
        let next = tokio::select! {
            biased;
            polled = next_frame(body) => Ok(polled),
            () = &mut sleep => Err(()),
        };
        let now = Instant::now();
        let (frame, waited) = match next {
            Err(_) if state.terminal() => break BodyEnd::Abandoned,
            Err(_) => {
                break BodyEnd::Failed(ErrorClass::Timeout {
                    phase: TimeoutPhase::Body,
                });
            }
            Ok(polled) => polled,
        };
        let data = match frame {
            None => {
                match framer.finish(now) {
                    Ok(Some(last)) => {
                        record(&mut state, ledger, last, now, read_no, &mut last_event_read);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        break BodyEnd::Failed(ErrorClass::Protocol(format!("invalid SSE: {e}")));
                    }
                }
                break BodyEnd::Complete;
            }
            Some(Err(e)) => {
                break BodyEnd::Failed(ErrorClass::Reset(format!(
                    "stream interrupted: {}",
                    describe(&e)
                )));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if waited {
            read_no += 1;
        }
        ledger.first_byte.get_or_insert(now);
        if let Err(e) = framer.push(&data, now, &mut framed) {
            break BodyEnd::Failed(ErrorClass::Protocol(format!("invalid SSE: {e}")));
        }
        for f in framed.drain(..) {
            record(&mut state, ledger, f, now, read_no, &mut last_event_read);
        }
        if state.terminal() && end.is_none() {
            *end = Some(now);
            sleep
                .as_mut()
                .reset(deadline.min(now + AFTER_TERMINAL_GRACE).into());
        }
    };
    if end.is_none() {
        *end = Some(Instant::now());
    }
    ledger.usage = state.usage();
    let outcome = match &how {
        // An error event or a complete stream decides, whatever happened to the
        // connection afterwards.
        BodyEnd::Failed(class) if !state.errored() && !state.terminal() => Err(class.clone()),
        _ => state.outcome(),
    };
    ledger.text = std::mem::take(&mut state.text);
    (outcome, how)
}

/// Classifies one framed event and appends its stamp.
fn record(
    state: &mut StreamState,
    ledger: &mut Ledger,
    framed: Framed,
    done_at: Instant,
    read_no: u64,
    last_event_read: &mut Option<u64>,
) {
    let (kind, tokens) = state.classify(&framed.event);
    let coalesced = *last_event_read == Some(read_no);
    *last_event_read = Some(read_no);
    ledger.events.push(EventStamp {
        at: framed.first_byte,
        done_at,
        kind,
        tokens,
        coalesced,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_a_clear_error() {
        let err = Client::new(ClientOptions {
            tls_roots: TlsRoots {
                webpki: true,
                extra_ca_file: Some("/nonexistent/ca.pem".into()),
            },
            ..ClientOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn no_roots_is_an_error() {
        let err = Client::new(ClientOptions {
            tls_roots: TlsRoots {
                webpki: false,
                extra_ca_file: None,
            },
            ..ClientOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("no trust roots"), "{err}");
    }
}

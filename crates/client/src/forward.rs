//! Forwarding: a request passed through to an upstream as given, and its response handed
//! back while it arrives (the gateway's upstream call).
//!
//! Unlike [`Client::send`], which reads a whole response into a ledger, [`Client::forward`]
//! returns as soon as the response headers are in; the caller pulls body chunks from
//! [`ForwardBody`] at its own pace, so a stream is relayed chunk by chunk with no
//! buffering. It shares the connection pools and connection setup of [`Client`] (the one
//! place tokenpace builds HTTP connections): a body read to its end returns its
//! connection to the pool; a body dropped early closes its connection, which is how an
//! upstream call is cancelled.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use tokio::time::timeout_at;

use crate::client::{Client, before_headers_error, ready};
use crate::error::{ErrorClass, TimeoutPhase};
use crate::ledger::ConnTiming;
use crate::target::{Endpoint, PoolKey};
use crate::transport::connect::{Conn, describe, open};

/// What to forward.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// Usually `POST`.
    pub method: Method,
    /// The path below the endpoint's base (`/chat/completions`) or already under it.
    pub path: String,
    /// Headers the caller passes through (e.g. `anthropic-beta`); the endpoint's own
    /// headers (host, authentication, user agent, content type) are set after them and
    /// win.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
    /// The time by which the response must have ended (headers and body).
    pub deadline: Instant,
}

/// A response whose headers have arrived.
#[derive(Debug)]
pub struct Forwarded {
    /// The upstream's status.
    pub status: StatusCode,
    /// The upstream's headers.
    pub headers: HeaderMap,
    /// When the request was handed to the connection (after checkout or connect).
    pub sent_at: Instant,
    /// When the headers arrived.
    pub headers_at: Instant,
    /// Whether a pooled connection was reused.
    pub reused: bool,
    /// The body, to be pulled.
    pub body: ForwardBody,
}

/// A response body being read. Dropping it before its end closes the connection.
#[derive(Debug)]
pub struct ForwardBody {
    body: Incoming,
    conn: Option<Conn>,
    client: Client,
    key: PoolKey,
    deadline: Instant,
}

impl ForwardBody {
    /// The next chunk of data, `None` at the end (the connection then goes back to the
    /// pool), or the error that broke the body.
    pub async fn next(&mut self) -> Option<Result<Bytes, ErrorClass>> {
        loop {
            let frame = match timeout_at(self.deadline.into(), self.body.frame()).await {
                Err(_) => {
                    self.conn = None;
                    return Some(Err(ErrorClass::Timeout {
                        phase: TimeoutPhase::Body,
                    }));
                }
                Ok(frame) => frame,
            };
            match frame {
                None => {
                    if let Some(conn) = self.conn.take() {
                        self.client.pool().put(&self.key, conn);
                    }
                    return None;
                }
                Some(Err(e)) => {
                    self.conn = None;
                    return Some(Err(ErrorClass::Reset(format!(
                        "reading the body: {}",
                        describe(&e)
                    ))));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Some(Ok(data)),
                    _ => continue,
                },
            }
        }
    }

    /// Reads the rest of the body, at most `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Bytes, ErrorClass> {
        let mut first: Option<Bytes> = None;
        let mut all: Vec<u8> = Vec::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            let len = first.as_ref().map_or(0, Bytes::len) + all.len() + chunk.len();
            if len > limit {
                self.conn = None;
                return Err(ErrorClass::Protocol(format!(
                    "the response body is larger than {limit} bytes"
                )));
            }
            // The common case is one chunk: keep it without copying.
            match first.take() {
                None if all.is_empty() => first = Some(chunk),
                Some(prev) => {
                    all.extend_from_slice(&prev);
                    all.extend_from_slice(&chunk);
                }
                None => all.extend_from_slice(&chunk),
            }
        }
        Ok(first.unwrap_or_else(|| Bytes::from(all)))
    }
}

impl Client {
    /// Sends `req` to `endpoint` and returns when the response headers are in.
    ///
    /// A pooled connection that turns out closed before the request could be written is
    /// replaced once by a fresh one (nothing reached the server); any other failure is
    /// returned, and retrying is the caller's policy.
    pub async fn forward(
        &self,
        endpoint: &Endpoint,
        req: ForwardRequest,
    ) -> Result<Forwarded, ErrorClass> {
        let key = endpoint.pool_key();
        let started = Instant::now();
        let connect_deadline = req.deadline.min(started + self.options().connect_timeout);
        let path = endpoint.join(&req.path);
        let mut fresh_only = false;
        loop {
            let (mut conn, reused) = self
                .checkout_conn(key, req.deadline, connect_deadline, fresh_only)
                .await?;
            let mut http = hyper::Request::builder()
                .method(req.method.clone())
                .uri(path.as_str())
                .body(http_body_util::Full::new(req.body.clone()))
                .map_err(|e| ErrorClass::Protocol(format!("request for {path}: {e}")))?;
            let headers = http.headers_mut();
            *headers = req.headers.clone();
            let passed_version = headers.contains_key("anthropic-version");
            for (name, value) in endpoint.headers() {
                // A client's own API version passes through; everything else (host, key,
                // user agent, content type) is the endpoint's.
                if passed_version && name.as_str() == "anthropic-version" {
                    continue;
                }
                headers.insert(name.clone(), value.clone());
            }
            if !req.body.is_empty() {
                headers.insert(
                    hyper::header::CONTENT_LENGTH,
                    HeaderValue::from(req.body.len()),
                );
            }
            let sent_at = Instant::now();
            match timeout_at(req.deadline.into(), conn.sender.try_send_request(http)).await {
                Err(_) => {
                    return Err(ErrorClass::Timeout {
                        phase: TimeoutPhase::Headers,
                    });
                }
                Ok(Ok(response)) => {
                    let headers_at = Instant::now();
                    let (parts, body) = response.into_parts();
                    return Ok(Forwarded {
                        status: parts.status,
                        headers: parts.headers,
                        sent_at,
                        headers_at,
                        reused,
                        body: ForwardBody {
                            body,
                            conn: Some(conn),
                            client: self.clone(),
                            key: key.clone(),
                            deadline: req.deadline,
                        },
                    });
                }
                Ok(Err(mut e)) => {
                    if reused && !fresh_only && e.take_message().is_some() {
                        fresh_only = true;
                        continue;
                    }
                    return Err(before_headers_error(e.error()));
                }
            }
        }
    }

    /// A ready connection (pooled unless `fresh_only`) and whether it was reused.
    async fn checkout_conn(
        &self,
        key: &PoolKey,
        deadline: Instant,
        connect_deadline: Instant,
        fresh_only: bool,
    ) -> Result<(Conn, bool), ErrorClass> {
        if !fresh_only {
            while let Some(mut conn) = self.pool().take(key) {
                let wait = connect_deadline.min(Instant::now() + crate::client::POOLED_READY_WAIT);
                if ready(&mut conn, wait).await.is_ok() {
                    return Ok((conn, true));
                }
            }
        }
        let mut timing = ConnTiming::default();
        let mut conn = open(key, self.tls(), deadline, connect_deadline, &mut timing).await?;
        ready(&mut conn, connect_deadline).await?;
        Ok((conn, false))
    }
}

//! Opening one connection: resolve, connect, optionally TLS, then the HTTP/1.1 handshake,
//! with each phase timed into a [`ConnTiming`] as it completes (so a TLS failure still
//! reports its DNS and TCP times).
//!
//! The socket is wrapped in [`StampedIo`], which records the time of its latest write: once
//! the response headers are in, that is when the request finished going out (`t_sent`),
//! which hyper does not report. One atomic store per write, never per token.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ErrorClass, TimeoutPhase};
use crate::ledger::ConnTiming;
use crate::target::{PoolKey, Scheme};

/// The time of the latest write on a socket, as nanoseconds after `base` plus one (zero
/// means no write yet).
#[derive(Debug)]
pub(crate) struct WriteStamp {
    base: Instant,
    last: AtomicU64,
}

impl WriteStamp {
    fn new() -> Self {
        WriteStamp {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.store(nanos + 1, Ordering::Relaxed);
    }

    /// An opaque token for "the writes so far".
    pub(crate) fn token(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    /// The latest write, if there was one after `token` was taken.
    pub(crate) fn written_since(&self, token: u64) -> Option<Instant> {
        let last = self.last.load(Ordering::Relaxed);
        (last != token && last != 0).then(|| self.base + Duration::from_nanos(last - 1))
    }
}

/// A TCP stream that stamps its writes.
#[derive(Debug)]
pub(crate) struct StampedIo {
    inner: TcpStream,
    stamp: Arc<WriteStamp>,
}

impl AsyncRead for StampedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StampedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.stamp.mark();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.stamp.mark();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Plain or TLS, over a stamped TCP stream (TLS above the stamp, so the stamp sees the
/// encrypted bytes leave).
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(StampedIo),
    Tls(Box<TlsStream<StampedIo>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open HTTP/1.1 connection. Owns the task that drives it and aborts that task when
/// dropped, which closes the socket.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<Full<Bytes>>,
    /// The TCP connect time, kept as the connection's round-trip estimate.
    pub(crate) rtt: Duration,
    pub(crate) stamp: Arc<WriteStamp>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The error text of an error and its sources, without repeating itself.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Opens a connection to `key`, recording each phase in `timing`. `connect_deadline` bounds
/// DNS and TCP; `deadline` (the request's) bounds TLS.
pub(crate) async fn open(
    key: &PoolKey,
    tls: &TlsConnector,
    deadline: Instant,
    connect_deadline: Instant,
    timing: &mut ConnTiming,
) -> Result<Conn, ErrorClass> {
    let connect_timeout = || ErrorClass::Timeout {
        phase: TimeoutPhase::Connect,
    };
    let addrs: Vec<SocketAddr> = match key.ip() {
        Some(ip) => vec![SocketAddr::new(ip, key.port)],
        None => {
            let started = tokio::time::Instant::now();
            let resolved = timeout_at(
                connect_deadline.into(),
                tokio::net::lookup_host((key.host.as_str(), key.port)),
            )
            .await
            .map_err(|_| connect_timeout())?
            .map_err(|e| ErrorClass::Connect(format!("resolving '{}': {e}", key.host)))?;
            timing.dns = Some(started.elapsed());
            resolved.collect()
        }
    };
    if addrs.is_empty() {
        return Err(ErrorClass::Connect(format!(
            "resolving '{}': no addresses",
            key.host
        )));
    }
    let mut last_error = None;
    let mut stream = None;
    for addr in &addrs {
        let started = Instant::now();
        match timeout_at(connect_deadline.into(), TcpStream::connect(addr)).await {
            Err(_) => return Err(connect_timeout()),
            Ok(Ok(s)) => {
                let took = started.elapsed();
                timing.tcp = Some(took);
                timing.rtt_estimate = Some(took);
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_error = Some(format!("{addr}: {e}")),
        }
    }
    let Some(stream) = stream else {
        return Err(ErrorClass::Connect(last_error.unwrap_or_default()));
    };
    // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs can hold small writes for
    // up to 40 ms, which would land inside every measured latency.
    stream
        .set_nodelay(true)
        .map_err(|e| ErrorClass::Connect(format!("setting TCP_NODELAY: {e}")))?;
    let rtt = timing.tcp.unwrap_or_default();
    let stamp = Arc::new(WriteStamp::new());
    let io = StampedIo {
        inner: stream,
        stamp: stamp.clone(),
    };
    let transport = match key.scheme {
        Scheme::Http => Transport::Plain(io),
        Scheme::Https => {
            let name = ServerName::try_from(key.host.clone()).map_err(|e| {
                ErrorClass::Tls(format!("'{}' is not a valid server name: {e}", key.host))
            })?;
            let started = Instant::now();
            let tls_stream = timeout_at(deadline.into(), tls.connect(name, io))
                .await
                .map_err(|_| ErrorClass::Timeout {
                    phase: TimeoutPhase::Tls,
                })?
                .map_err(|e| ErrorClass::Tls(describe(&e)))?;
            timing.tls = Some(started.elapsed());
            Transport::Tls(Box::new(tls_stream))
        }
    };
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(transport))
        .await
        .map_err(|e| ErrorClass::Connect(format!("HTTP/1.1 handshake: {}", describe(&e))))?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("upstream connection ended: {}", describe(&e));
        }
    });
    Ok(Conn {
        sender,
        rtt,
        stamp,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_stamp_reports_only_new_writes() {
        let stamp = WriteStamp::new();
        let before = stamp.token();
        assert_eq!(stamp.written_since(before), None);
        stamp.mark();
        let at = stamp.written_since(before).unwrap();
        assert!(at >= stamp.base);
        let token = stamp.token();
        assert_eq!(stamp.written_since(token), None);
    }

    #[test]
    fn describe_joins_sources_once() {
        let inner = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let outer = io::Error::other(inner);
        assert_eq!(describe(&outer), "reset by peer");
    }
}

//! Connections to upstreams: [`connect`] opens them (DNS, TCP with `TCP_NODELAY`, rustls
//! TLS, each phase timed) and wraps the socket so the time of the last request write is
//! known; [`pool`] keeps idle HTTP/1.1 keep-alive connections per scheme, host and port.
//!
//! This is the one place tokenpace builds HTTP client connections (STYLE habit 9). The
//! request/response exchange on top of a connection is [`crate::client`]'s.

pub(crate) mod connect;
pub(crate) mod pool;

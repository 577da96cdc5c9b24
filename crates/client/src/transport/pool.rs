//! Idle keep-alive connections, per scheme, host and port.
//!
//! One short lock per checkout and per checkin, never held across an await. Connections go
//! out most-recently-used first (the warmest, least likely to have been closed by the
//! server) and come back only after their response body was read to the end; closed ones
//! are dropped on the way in and out.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::target::PoolKey;
use crate::transport::connect::Conn;

#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Conn>>>,
    max_idle_per_host: usize,
}

impl Pool {
    pub(crate) fn new(max_idle_per_host: usize) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_host,
        }
    }

    /// The most recently returned connection that is not known to be closed.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.get_mut(key)?;
        while let Some(conn) = conns.pop() {
            if !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose response was read to the end. Returns whether it was kept
    /// (not closed, and the pool for its host not full).
    pub(crate) fn put(&self, key: &PoolKey, conn: Conn) -> bool {
        if conn.sender.is_closed() || self.max_idle_per_host == 0 {
            return false;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = match idle.get_mut(key) {
            Some(conns) => conns,
            None => idle.entry(key.clone()).or_default(),
        };
        if conns.len() >= self.max_idle_per_host {
            return false;
        }
        conns.push(conn);
        true
    }

    /// Idle connections to `key` (closed ones included until they are next looked at).
    pub(crate) fn idle(&self, key: &PoolKey) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(key).map_or(0, Vec::len)
    }
}

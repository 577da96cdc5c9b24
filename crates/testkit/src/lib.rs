//! Test helpers shared by tokenpace's crates (never shipped): reading a streamed response
//! as timestamped SSE events, and starting a `tokenpace` subprocess on port 0 and learning
//! its address from the `listening on http://ADDR` line.
//!
//! Servers in tests always bind 127.0.0.1 port 0, one per test, so no two tests share a
//! port, a file or a counter.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use protocol::sse::{SseDecoder, SseEvent};

/// One SSE event with the monotonic time it was decoded.
#[derive(Debug, Clone)]
pub struct TimedEvent {
    /// Arrival time (stamped before any JSON parsing).
    pub at: Instant,
    /// The event.
    pub event: SseEvent,
}

/// The body of a streamed response, read to its end.
#[derive(Debug)]
pub struct Stream {
    /// Events in arrival order.
    pub events: Vec<TimedEvent>,
    /// The error that ended the body early, if any (reset, truncation at the HTTP level).
    pub transport_error: Option<String>,
}

impl Stream {
    /// The `data` of every event.
    pub fn data(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.event.data.as_str()).collect()
    }

    /// Every data event parsed as JSON (skipping `[DONE]`).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.events
            .iter()
            .filter(|e| e.event.data != "[DONE]")
            .filter_map(|e| serde_json::from_str(&e.event.data).ok())
            .collect()
    }
}

/// Reads a response body as SSE events, stamping each on arrival.
pub async fn read_sse(resp: reqwest::Response) -> anyhow::Result<Stream> {
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    let mut body = resp.bytes_stream();
    let mut transport_error = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                let at = Instant::now();
                for event in decoder.push(&bytes)? {
                    events.push(TimedEvent { at, event });
                }
            }
            Err(e) => {
                transport_error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    if transport_error.is_none()
        && let Some(event) = decoder.finish()?
    {
        events.push(TimedEvent {
            at: Instant::now(),
            event,
        });
    }
    Ok(Stream {
        events,
        transport_error,
    })
}

/// A child process that announced `listening on http://ADDR`; killed on drop.
#[derive(Debug)]
pub struct Listening {
    /// The child.
    pub child: Child,
    /// `http://ADDR`.
    pub url: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (which must print `listening on http://ADDR` as its first stdout line)
/// and waits up to `timeout` for that line.
pub fn spawn_listening(mut command: Command, timeout: Duration) -> anyhow::Result<Listening> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .stdin(Stdio::null());
    let mut child = command.spawn().context("spawning the server process")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = tx.send(reader.read_line(&mut line).map(|_| line));
        // Keep draining so the child never blocks on a full pipe.
        let mut sink = String::new();
        while matches!(reader.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
    });
    let line = match rx.recv_timeout(timeout) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => {
            let _ = child.kill();
            bail!("reading the first line of the server's stdout: {e}");
        }
        Err(_) => {
            let _ = child.kill();
            bail!("the server printed no `listening on` line within {timeout:?}");
        }
    };
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("expected `listening on http://ADDR`, got {line:?}"))?
        .to_string();
    Ok(Listening { child, url })
}

/// A throwaway `redis-server` on a free loopback port, with no config file and nothing
/// written to disk; killed and reaped on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free port of 127.0.0.1 and waits until it answers
    /// `PING`. The port is found by binding port 0 and releasing it, so another process
    /// may take it first: a server that exits early is retried on a new port.
    pub fn start() -> anyhow::Result<RedisServer> {
        const ATTEMPTS: usize = 5;
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("finding a free port for redis-server")?
                .port();
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "redis-server not found: scripts/test.sh installs it (apt-get install redis-server)"
                ),
                Err(e) => return Err(e).context("spawning redis-server"),
            };
            let mut server = RedisServer {
                child: Some(child),
                port,
            };
            match server.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("redis-server did not start"))
            .context(format!("redis-server did not start in {ATTEMPTS} attempts")))
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server now (to test what happens when Redis goes away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait().context("polling redis-server")?
            {
                // Most likely the port was taken between finding and binding it.
                self.child = None;
                bail!("redis-server on port {} exited early: {status}", self.port);
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!(
                    "redis-server on port {} did not answer PING within {timeout:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG` (inline command, no client).
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && reply == *b"+PONG\r\n"
}

//! The shared ledger: [`RedisBackend`] keeps each lane's sliding window in Redis, so several
//! gateway instances admit against one count and together never exceed a tier's limits.
//!
//! It owns the data layout, the Lua scripts that read and change it atomically, what to
//! do when Redis fails, and the in-process ledger it falls back to while Redis is
//! unreachable; the connection itself (timeouts, back-off, redaction) is [`RedisConn`]'s,
//! shared with the cache's Redis tier. The rule itself is the one the in-process ledger applies: a charge
//! admitted at `t` counts while `now < t + window`, a charge is admitted only if every
//! limit still holds with it, and a rejection says exactly when the oldest charges will
//! have made room. Queueing and retrying are the caller's ([`super::queue`]).
//!
//! **Layout.** The keys of a lane are `{prefix}{{upstream}:{model}}:{suffix}`: the braces
//! are a Redis Cluster hash tag, so all keys of a lane sit in one slot and one script may
//! touch them all. Per lane:
//!
//! | suffix | type | content |
//! |---|---|---|
//! | `w` | sorted set | charge id, scored by admission time (µs, Redis clock) |
//! | `c` | hash | charge id -> `requests,input,output,extra` |
//! | `s` | hash | running sums `r`, `i`, `o`, `x` of `c`; `now` (the lane's clock); `win` (the window, µs) |
//! | `id` | string | the id counter |
//! | `p` | string | paused until (µs, Redis clock) |
//! | `dw`, `dc`, `ds` | as `w`, `c`, `s` | the 24 h tally (`r`, `t`), only while a daily limit is set |
//!
//! `extra` is tokens that count against the combined token limit only: calibration's share
//! of an upstream's `remaining-tokens` that neither the input nor the output count explains.
//! The running sums keep the common path O(expired charges) rather than O(window): a
//! reservation prunes, reads four numbers and writes one member. Only a rejection walks
//! the window, oldest first, and stops as soon as enough has expired.
//!
//! **Scripts.** Every operation is one `EVALSHA` (falling back to `EVAL` once per script
//! and server) that reads the Redis clock (`TIME`, made monotonic per lane), prunes what
//! has expired, does its work and refreshes `PEXPIRE` (window plus 1 s; 24 h for the daily
//! keys), so an idle lane vanishes by itself. Ids come from `INCR` on a counter that starts
//! at the Redis clock in µs when it is (re)created, so an id stays unique even across an
//! expired counter or a restarted Redis, and a late settle can never touch a newer charge.
//!
//! **Failure policy: fail open, to an in-process ledger.** Admission must neither stop all
//! traffic while Redis is down nor let it through unmetered. So every Redis round trip is
//! bounded by a short timeout (250 ms by default); after a failed connect, operations fail
//! at once for a back-off (1 s) instead of each paying the timeout (both [`RedisConn`]'s,
//! as for the cache's Redis tier); and an operation that cannot reach Redis is applied to a private in-process
//! ledger with the same rule. During an outage each instance therefore enforces the full
//! limits on its own (N instances may admit up to N times the limits, for as long as the
//! outage lasts); the provider's own 429s, fed back through [`Backend::pause`], remain the
//! backstop. When Redis answers again, the first reservation on a lane first copies the
//! fallback's live charges (and any pause) into Redis, with their ages, so the other
//! instances see them; late settles and cancels of those reservations follow them there.
//! A warning is logged at most once per 10 s while failing, an info line on recovery, and
//! [`RedisBackend::errors`] counts every operation that could not use Redis. A settle or
//! cancel of a Redis charge that fails is lost: the charge keeps its reserved amounts
//! until it expires (conservative unless the usage exceeded the reservation).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ledger::never_fits;
use super::{Backend, BoxFuture, Charge, Lane, Limits, NotNow, Observed, Reservation};
use crate::redis_conn::{ConnError, RedisConn};

pub use crate::redis_conn::{DEFAULT_RECONNECT_BACKOFF, DEFAULT_TIMEOUT};

/// Set in the id of every reservation the in-process fallback admitted. Redis ids stay
/// below 2^53 (Lua numbers are doubles), so the two never collide.
pub const FALLBACK_ID_BIT: u64 = 1 << 63;

/// How often the outage warning may repeat.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The span of the daily limits, in µs.
const DAY_US: i64 = 86_400_000_000;

/// The largest integer a Lua number (a double) holds exactly: every number sent to the
/// scripts is clamped to it, which is unlimited for any real tier.
const LUA_MAX: i64 = (1 << 53) - 1;

/// Why the shared ledger could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisLedgerError {
    /// The URL does not parse, or Redis could not be reached or reported an error (the
    /// shared connection's error, worded as it words it).
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A script answered something it never returns.
    #[error(
        "Redis at '{url}': {op} answered {reply:?}, which the admission script never returns \
         (is another program writing under the prefix?)"
    )]
    Reply {
        /// The URL, credentials redacted.
        url: String,
        /// What was attempted.
        op: &'static str,
        /// The answer.
        reply: Vec<i64>,
    },
}

/// Which ledger admitted a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// The shared ledger in Redis.
    Redis,
    /// The in-process fallback, because Redis was unreachable.
    Fallback,
}

/// An admission with where and when it happened (what [`RedisBackend::reserve`] returns;
/// [`Backend::try_reserve`] keeps only the reservation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The reservation, to settle or cancel.
    pub reservation: Reservation,
    /// The admission time since the Unix epoch: the Redis server's clock (the charge's
    /// score), or this host's for the fallback.
    pub at_unix: Duration,
    /// Which ledger admitted it.
    pub ledger: Ledger,
}

/// Rate-limit ledgers shared through Redis by several gateway instances.
pub struct RedisBackend {
    conn: RedisConn,
    prefix: String,
    fallback: Mutex<Fallback>,
    errors: AtomicU64,
    /// Whether the last Redis operation failed, to log the recovery once.
    degraded: AtomicBool,
    warned: Mutex<Warned>,
}

#[derive(Debug, Default)]
struct Warned {
    last: Option<Instant>,
    suppressed: u64,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.conn.url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.conn.timeout())
            .field("reconnect_backoff", &self.conn.reconnect_backoff())
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend on the Redis at `url` (`redis://[user][:password@]host[:port][/db]`),
    /// keeping lanes under `prefix` (e.g. `tp:adm:`; it should not contain `{` or `}`,
    /// which would move the hash tag). Parses the URL only: nothing is contacted until the
    /// first operation, so a gateway starts while Redis is down.
    pub fn new(url: &str, prefix: &str) -> Result<RedisBackend, RedisLedgerError> {
        Ok(RedisBackend {
            conn: RedisConn::open(url)?,
            prefix: prefix.to_owned(),
            fallback: Mutex::new(Fallback::new()),
            errors: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            warned: Mutex::new(Warned::default()),
        })
    }

    /// Bounds connecting and each script call by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> RedisBackend {
        self.conn = self.conn.with_timeout(timeout);
        self
    }

    /// Fails operations over to the fallback at once for `backoff` after a failed connect,
    /// instead of [`DEFAULT_RECONNECT_BACKOFF`].
    pub fn with_reconnect_backoff(mut self, backoff: Duration) -> RedisBackend {
        self.conn = self.conn.with_reconnect_backoff(backoff);
        self
    }

    /// The URL with its credentials redacted (for logs).
    pub fn url(&self) -> &str {
        self.conn.url()
    }

    /// How many operations could not use Redis (each was applied to the fallback, or
    /// dropped if it concerned a charge held in Redis).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The common beginning of a lane's keys: `{prefix}{{upstream}:{model}}:`.
    pub fn lane_prefix(&self, lane: &Lane) -> String {
        format!("{}{{{}:{}}}:", self.prefix, lane.upstream, lane.model)
    }

    fn lane_keys(&self, lane: &Lane) -> [String; 8] {
        let base = self.lane_prefix(lane);
        ["w", "c", "s", "id", "p", "dw", "dc", "ds"].map(|suffix| format!("{base}{suffix}"))
    }

    /// [`Backend::try_reserve`], also saying when and by which ledger the charge was
    /// admitted.
    pub async fn reserve(
        &self,
        lane: &Lane,
        limits: Limits,
        window: Duration,
        charge: Charge,
    ) -> Result<Admitted, NotNow> {
        // Checked here, not in the script: it needs no state, holds in an outage too, and
        // reads the same as every other backend's.
        if let Some(reason) = never_fits(&limits, charge, window) {
            return Err(NotNow::Never(reason));
        }
        let window_us = micros(window);
        match self.redis_reserve(lane, limits, window_us, charge).await {
            Ok(outcome) => {
                self.note_success();
                outcome
            }
            Err(e) => {
                self.note_failure("reserve", &e);
                self.fallback_reserve(lane, limits, window_us, charge)
            }
        }
    }

    async fn redis_reserve(
        &self,
        lane: &Lane,
        limits: Limits,
        window_us: i64,
        charge: Charge,
    ) -> Result<Result<Admitted, NotNow>, RedisLedgerError> {
        self.carry_over(lane, limits, window_us).await?;
        let args = [
            window_us,
            cap(limits.requests),
            cap(limits.tokens),
            cap(limits.input_tokens),
            cap(limits.output_tokens),
            cap(limits.requests_per_day),
            cap(limits.tokens_per_day),
            lua(charge.requests),
            lua(charge.input),
            lua(charge.output),
        ];
        let reply = self.eval("reserve", &SCRIPTS.reserve, lane, &args).await?;
        match reply[..] {
            [1, id, at] => Ok(Ok(Admitted {
                reservation: Reservation {
                    lane: lane.clone(),
                    id: u64::try_from(id).unwrap_or(0),
                    charge,
                },
                at_unix: Duration::from_micros(u64::try_from(at).unwrap_or(0)),
                ledger: Ledger::Redis,
            })),
            [0, wait] => Ok(Err(NotNow::RetryIn(Duration::from_micros(
                u64::try_from(wait).unwrap_or(0),
            )))),
            _ => Err(self.reply_error("reserve", reply)),
        }
    }

    fn fallback_reserve(
        &self,
        lane: &Lane,
        limits: Limits,
        window_us: i64,
        charge: Charge,
    ) -> Result<Admitted, NotNow> {
        let mut fallback = self.fallback();
        let now = fallback.now();
        match fallback.reserve(lane, limits, window_us, charge, now) {
            Ok(id) => Ok(Admitted {
                reservation: Reservation {
                    lane: lane.clone(),
                    id,
                    charge,
                },
                at_unix: unix_now(),
                ledger: Ledger::Fallback,
            }),
            Err(wait) => Err(NotNow::RetryIn(Duration::from_micros(
                u64::try_from(wait).unwrap_or(0),
            ))),
        }
    }

    /// Copies the fallback's live charges on `lane` into Redis (once Redis answers again),
    /// so that every instance counts what this one admitted during the outage.
    async fn carry_over(
        &self,
        lane: &Lane,
        limits: Limits,
        window_us: i64,
    ) -> Result<(), RedisLedgerError> {
        let carried = {
            let mut fallback = self.fallback();
            let now = fallback.now();
            match fallback.begin_carry(lane, now) {
                Some(carried) => carried,
                None => return Ok(()),
            }
        };
        let daily = limits.requests_per_day.is_some() || limits.tokens_per_day.is_some();
        let mut args = vec![
            window_us,
            i64::from(daily),
            carried.paused_for.min(LUA_MAX),
            i64::try_from(carried.charges.len()).unwrap_or(0),
        ];
        for held in &carried.charges {
            // Ages as of the snapshot: the copies look a little younger than they are, so
            // they expire a little late, never early.
            args.push((carried.now - held.at).clamp(-LUA_MAX, LUA_MAX));
            args.extend(held.amounts.map(lua));
            args.push(i64::from(held.in_window));
            args.push(i64::from(held.in_day));
        }
        let result = self.eval("carry over", &SCRIPTS.import, lane, &args).await;
        let fixups = {
            let mut fallback = self.fallback();
            let now = fallback.now();
            match &result {
                Ok(ids) if ids.len() == carried.charges.len() => {
                    fallback.finish_carry(lane, &carried, ids, window_us, now)
                }
                _ => {
                    fallback.abandon_carry(lane);
                    Vec::new()
                }
            }
        };
        let ids = result?;
        if ids.len() != carried.charges.len() {
            return Err(self.reply_error("carry over", ids));
        }
        for fixup in fixups {
            let outcome = match fixup {
                Fixup::Settle(id, actual) => self.redis_settle(lane, id, actual).await,
                Fixup::Cancel(id) => self.redis_cancel(lane, id).await,
            };
            if let Err(e) = outcome {
                self.note_failure("carry over", &e);
            }
        }
        Ok(())
    }

    async fn settle_charge(&self, reservation: &Reservation, actual: Charge) {
        let redis_id = if reservation.id & FALLBACK_ID_BIT != 0 {
            let mut fallback = self.fallback();
            let now = fallback.now();
            match fallback.settle(reservation, actual, now) {
                Some(redis_id) => redis_id,
                None => return,
            }
        } else {
            reservation.id
        };
        match self.redis_settle(&reservation.lane, redis_id, actual).await {
            Ok(()) => self.note_success(),
            Err(e) => self.note_failure("settle", &e),
        }
    }

    async fn redis_settle(
        &self,
        lane: &Lane,
        id: u64,
        actual: Charge,
    ) -> Result<(), RedisLedgerError> {
        let args = [
            lua(id),
            lua(actual.requests),
            lua(actual.input),
            lua(actual.output),
        ];
        self.eval("settle", &SCRIPTS.settle, lane, &args)
            .await
            .map(drop)
    }

    async fn cancel_charge(&self, reservation: &Reservation) {
        let redis_id = if reservation.id & FALLBACK_ID_BIT != 0 {
            let mut fallback = self.fallback();
            let now = fallback.now();
            match fallback.cancel(reservation, now) {
                Some(redis_id) => redis_id,
                None => return,
            }
        } else {
            reservation.id
        };
        match self.redis_cancel(&reservation.lane, redis_id).await {
            Ok(()) => self.note_success(),
            Err(e) => self.note_failure("cancel", &e),
        }
    }

    async fn redis_cancel(&self, lane: &Lane, id: u64) -> Result<(), RedisLedgerError> {
        self.eval("cancel", &SCRIPTS.cancel, lane, &[lua(id)])
            .await
            .map(drop)
    }

    async fn pause_lane(&self, lane: &Lane, after: Duration) {
        let after_us = micros(after);
        match self.eval("pause", &SCRIPTS.pause, lane, &[after_us]).await {
            Ok(_) => self.note_success(),
            Err(e) => {
                self.note_failure("pause", &e);
                let mut fallback = self.fallback();
                let now = fallback.now();
                fallback.pause(lane, after_us, now);
            }
        }
    }

    async fn calibrate_lane(
        &self,
        lane: &Lane,
        limits: Limits,
        window: Duration,
        observed: Observed,
    ) {
        let pairs = [
            (limits.requests, observed.remaining_requests),
            (limits.tokens, observed.remaining_tokens),
            (limits.input_tokens, observed.remaining_input_tokens),
            (limits.output_tokens, observed.remaining_output_tokens),
        ];
        if !pairs.iter().any(|(l, r)| l.is_some() && r.is_some()) {
            return; // Nothing the ledger limits was reported: nothing to align.
        }
        let window_us = micros(window);
        let reset = |d: Option<Duration>| d.map_or(-1, micros);
        let args = [
            window_us,
            cap(limits.requests),
            cap(limits.tokens),
            cap(limits.input_tokens),
            cap(limits.output_tokens),
            cap(observed.remaining_requests),
            cap(observed.remaining_tokens),
            cap(observed.remaining_input_tokens),
            cap(observed.remaining_output_tokens),
            reset(observed.reset_requests),
            reset(observed.reset_tokens),
        ];
        match self
            .eval("calibrate", &SCRIPTS.calibrate, lane, &args)
            .await
        {
            Ok(_) => self.note_success(),
            Err(e) => {
                self.note_failure("calibrate", &e);
                let mut fallback = self.fallback();
                let now = fallback.now();
                fallback.calibrate(lane, limits, window_us, observed, now);
            }
        }
    }

    async fn eval(
        &self,
        op: &'static str,
        script: &redis::Script,
        lane: &Lane,
        args: &[i64],
    ) -> Result<Vec<i64>, RedisLedgerError> {
        let mut invocation = script.prepare_invoke();
        for key in self.lane_keys(lane) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        Ok(self.conn.invoke(op, &invocation).await?)
    }

    fn reply_error(&self, op: &'static str, reply: Vec<i64>) -> RedisLedgerError {
        RedisLedgerError::Reply {
            url: self.conn.url().to_owned(),
            op,
            reply,
        }
    }

    fn fallback(&self) -> MutexGuard<'_, Fallback> {
        // A panic while holding the lock leaves consistent-enough accounting (each
        // method finishes its own writes or makes none that matter); keep admitting.
        self.fallback.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note_failure(&self, op: &'static str, error: &RedisLedgerError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.degraded.store(true, Ordering::Relaxed);
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if warned
            .last
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY)
        {
            tracing::warn!(
                url = %self.conn.url(),
                op,
                error = %error,
                suppressed = warned.suppressed,
                "the shared admission ledger is unreachable; admitting against this \
                 instance's own ledger until it answers again"
            );
            warned.last = Some(now);
            warned.suppressed = 0;
        } else {
            warned.suppressed += 1;
        }
    }

    fn note_success(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(url = %self.conn.url(), "the shared admission ledger answers again");
        }
    }
}

impl Backend for RedisBackend {
    fn try_reserve<'a>(
        &'a self,
        lane: &'a Lane,
        limits: Limits,
        window: Duration,
        charge: Charge,
    ) -> BoxFuture<'a, Result<Reservation, NotNow>> {
        Box::pin(async move {
            self.reserve(lane, limits, window, charge)
                .await
                .map(|admitted| admitted.reservation)
        })
    }

    fn settle<'a>(&'a self, reservation: &'a Reservation, actual: Charge) -> BoxFuture<'a, ()> {
        Box::pin(self.settle_charge(reservation, actual))
    }

    fn cancel<'a>(&'a self, reservation: &'a Reservation) -> BoxFuture<'a, ()> {
        Box::pin(self.cancel_charge(reservation))
    }

    fn pause<'a>(&'a self, lane: &'a Lane, after: Duration) -> BoxFuture<'a, ()> {
        Box::pin(self.pause_lane(lane, after))
    }

    fn calibrate<'a>(
        &'a self,
        lane: &'a Lane,
        limits: Limits,
        window: Duration,
        observed: Observed,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.calibrate_lane(lane, limits, window, observed))
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros())
        .unwrap_or(i64::MAX)
        .min(LUA_MAX)
}

fn lua(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(LUA_MAX).min(LUA_MAX)
}

/// A limit (or a reported remainder) as a script argument: -1 for none.
fn cap(v: Option<u64>) -> i64 {
    v.map_or(-1, lua)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The scripts. Every number crosses into Redis as a string made by `fmt` (`%.0f`): Lua's
// own number-to-string conversion would write 1.7e+15 for an id or a timestamp.

struct Scripts {
    reserve: redis::Script,
    settle: redis::Script,
    cancel: redis::Script,
    pause: redis::Script,
    calibrate: redis::Script,
    import: redis::Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| redis::Script::new(&format!("{PRELUDE}\n{body}"));
    Scripts {
        reserve: script(RESERVE),
        settle: script(SETTLE),
        cancel: script(CANCEL),
        pause: script(PAUSE),
        calibrate: script(CALIBRATE),
        import: script(IMPORT),
    }
});

/// Shared by all scripts. KEYS are always the eight keys of one lane, in this order.
const PRELUDE: &str = r#"
local W, C, S, ID, P, DW, DC, DS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local DAY = 86400000000
local SLACK_MS = 1000
-- The stored amounts of a window charge (requests, input, output, extra tokens) and of a
-- daily one (requests, tokens), and each limit as weights over them.
local WF = {'r', 'i', 'o', 'x'}
local DF = {'r', 't'}
local W_LIMITS = {{1, 0, 0, 0}, {0, 1, 1, 1}, {0, 1, 0, 0}, {0, 0, 1, 0}}
local D_LIMITS = {{1, 0}, {0, 1}}

local function fmt(n) return string.format('%.0f', n) end
local function num(v) return tonumber(v) or 0 end

-- The Redis clock in µs, never behind the lane's last admission: scores then follow the
-- order of admission even when the server's clock is stepped back.
local function clock()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('HGET', S, 'now'))
  if last and last > now then now = last end
  return now
end

local function parse(v, n)
  local out = {}
  if v then
    for part in string.gmatch(v, '[^,]+') do out[#out + 1] = tonumber(part) or 0 end
  end
  for k = #out + 1, n do out[k] = 0 end
  return out
end

local function join(a)
  local parts = {}
  for k = 1, #a do parts[k] = fmt(a[k]) end
  return table.concat(parts, ',')
end

local function sums(skey, fields)
  local v = redis.call('HMGET', skey, unpack(fields))
  local out = {}
  for k = 1, #fields do out[k] = num(v[k]) end
  return out
end

local function add_sums(skey, fields, delta, sign)
  for k = 1, #fields do
    if delta[k] ~= 0 then redis.call('HINCRBY', skey, fields[k], fmt(sign * delta[k])) end
  end
end

-- Removes the charges admitted at or before `cutoff` and takes them out of the sums.
local function prune(zkey, hkey, skey, fields, cutoff)
  local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', fmt(cutoff))
  if #expired == 0 then return end
  local freed = {}
  for k = 1, #fields do freed[k] = 0 end
  for _, id in ipairs(expired) do
    local a = parse(redis.call('HGET', hkey, id), #fields)
    for k = 1, #fields do freed[k] = freed[k] + a[k] end
  end
  for first = 1, #expired, 500 do
    redis.call('HDEL', hkey, unpack(expired, first, math.min(first + 499, #expired)))
  end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', fmt(cutoff))
  if redis.call('ZCARD', zkey) == 0 then
    -- Nothing left, so the sums are zero: resetting them heals any drift.
    redis.call('HDEL', skey, unpack(fields))
  else
    add_sums(skey, fields, freed, -1)
  end
end

-- Prunes with the lane's stored window (for the scripts that are not given one).
local function prune_known(now)
  local window = tonumber(redis.call('HGET', S, 'win'))
  if window then prune(W, C, S, WF, now - window) end
  if redis.call('EXISTS', DW) == 1 then prune(DW, DC, DS, DF, now - DAY) end
end

-- The limits `charge` would exceed on top of `used`: {weights, excess} each.
local function excesses(limits, weights, used, charge)
  local needs = {}
  for n = 1, #limits do
    if limits[n] >= 0 then
      local total = 0
      for k = 1, #used do total = total + weights[n][k] * (used[k] + charge[k]) end
      if total > limits[n] then
        needs[#needs + 1] = {weights = weights[n], excess = total - limits[n]}
      end
    end
  end
  return needs
end

-- When enough of the oldest charges will have expired to meet every need (nil if even
-- all of them do not: the sums drifted). Walks in batches and stops at the answer.
local function fit_time(zkey, hkey, nfields, needs, span)
  local start = 0
  while true do
    local batch = redis.call('ZRANGE', zkey, fmt(start), fmt(start + 127), 'WITHSCORES')
    if #batch == 0 then return nil end
    for j = 1, #batch, 2 do
      local a = parse(redis.call('HGET', hkey, batch[j]), nfields)
      local met = true
      for _, need in ipairs(needs) do
        for k = 1, nfields do need.excess = need.excess - need.weights[k] * a[k] end
        if need.excess > 0 then met = false end
      end
      if met then return tonumber(batch[j + 1]) + span end
    end
    start = start + 128
  end
end

-- Sets the keys to vanish `span` (plus slack) after the newest charge.
local function expire(zkey, others, now, span)
  local last = redis.call('ZRANGE', zkey, '-1', '-1', 'WITHSCORES')
  local horizon = now
  if #last == 2 and tonumber(last[2]) > horizon then horizon = tonumber(last[2]) end
  local ms = fmt(math.ceil((horizon + span - now) / 1000) + SLACK_MS)
  redis.call('PEXPIRE', zkey, ms)
  for _, key in ipairs(others) do redis.call('PEXPIRE', key, ms) end
end

-- Gives keys written by a script without a window (settle) the expiry of their set.
local function follow(zkey, others)
  local ttl = redis.call('PTTL', zkey)
  if ttl > 0 then
    for _, key in ipairs(others) do redis.call('PEXPIRE', key, ttl) end
  end
end

-- A fresh counter starts at the clock, so ids stay above any issued before it vanished.
local function next_id(now)
  if redis.call('EXISTS', ID) == 0 then redis.call('SET', ID, fmt(now)) end
  return redis.call('INCR', ID)
end

local function record(id, score, a, in_window, in_day)
  local sid = fmt(id)
  if in_window then
    redis.call('ZADD', W, fmt(score), sid)
    redis.call('HSET', C, sid, join(a))
    add_sums(S, WF, a, 1)
  end
  if in_day then
    local d = {a[1], a[2] + a[3]}
    redis.call('ZADD', DW, fmt(score), sid)
    redis.call('HSET', DC, sid, join(d))
    add_sums(DS, DF, d, 1)
  end
end

local function set_pause(now, until_us)
  if until_us <= now then return end
  if num(redis.call('GET', P)) >= until_us then return end
  redis.call('SET', P, fmt(until_us), 'PX', fmt(math.ceil((until_us - now) / 1000)))
end
"#;

/// ARGV: window; limits requests, tokens, input, output, requests/day, tokens/day (-1 =
/// none); charge requests, input, output. Returns {1, id, now} or {0, wait}.
const RESERVE: &str = r#"
local window = tonumber(ARGV[1])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local dlimits = {tonumber(ARGV[6]), tonumber(ARGV[7])}
local charge = {tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), 0}
local daily = dlimits[1] >= 0 or dlimits[2] >= 0
local now = clock()
prune(W, C, S, WF, now - window)
if daily then prune(DW, DC, DS, DF, now - DAY) end
local ready = now
local paused = num(redis.call('GET', P))
if paused > ready then ready = paused end
local needs = excesses(limits, W_LIMITS, sums(S, WF), charge)
if #needs > 0 then
  ready = math.max(ready, fit_time(W, C, 4, needs, window) or (now + window))
end
if daily then
  local dneeds = excesses(dlimits, D_LIMITS, sums(DS, DF), {charge[1], charge[2] + charge[3]})
  if #dneeds > 0 then
    ready = math.max(ready, fit_time(DW, DC, 2, dneeds, DAY) or (now + DAY))
  end
end
if ready > now then return {0, ready - now} end
local id = next_id(now)
record(id, now, charge, true, daily)
redis.call('HSET', S, 'now', fmt(now), 'win', fmt(window))
expire(W, {C, S, ID}, now, window)
if daily then expire(DW, {DC, DS}, now, DAY) end
return {1, id, now}
"#;

/// ARGV: id; actual requests, input, output. The charge keeps its time (and any extra).
const SETTLE: &str = r#"
local id = ARGV[1]
local r, i, o = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
prune_known(clock())
local old = redis.call('HGET', C, id)
if old then
  local a = parse(old, 4)
  local b = {r, i, o, a[4]}
  redis.call('HSET', C, id, join(b))
  add_sums(S, WF, {b[1] - a[1], b[2] - a[2], b[3] - a[3], 0}, 1)
  follow(W, {C, S})
end
local dold = redis.call('HGET', DC, id)
if dold then
  local a = parse(dold, 2)
  local b = {r, i + o}
  redis.call('HSET', DC, id, join(b))
  add_sums(DS, DF, {b[1] - a[1], b[2] - a[2]}, 1)
  follow(DW, {DC, DS})
end
return {}
"#;

/// ARGV: id.
const CANCEL: &str = r#"
local id = ARGV[1]
prune_known(clock())
local function remove(zkey, hkey, skey, fields)
  local old = redis.call('HGET', hkey, id)
  if not old then return end
  redis.call('HDEL', hkey, id)
  redis.call('ZREM', zkey, id)
  if redis.call('ZCARD', zkey) == 0 then
    redis.call('HDEL', skey, unpack(fields))
  else
    add_sums(skey, fields, parse(old, #fields), -1)
  end
end
remove(W, C, S, WF)
remove(DW, DC, DS, DF)
return {}
"#;

/// ARGV: after (µs). A pause only ever extends.
const PAUSE: &str = r#"
local now = clock()
prune_known(now)
set_pause(now, now + tonumber(ARGV[1]))
return {}
"#;

/// ARGV: window; limits requests, tokens, input, output; remaining requests, tokens,
/// input, output; reset of requests, of tokens (µs; -1 = unknown, taken as the window).
const CALIBRATE: &str = r#"
local window = tonumber(ARGV[1])
local L = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local R = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
local reset_r, reset_t = tonumber(ARGV[10]), tonumber(ARGV[11])
if reset_r < 0 then reset_r = window end
if reset_t < 0 then reset_t = window end
local now = clock()
prune(W, C, S, WF, now - window)
local s = sums(S, WF)
local added = false
-- A synthetic charge timed to leave the window when the upstream's count resets.
if L[1] >= 0 and R[1] >= 0 and reset_r > 0 then
  local deficit = (L[1] - s[1]) - R[1]
  if deficit > 0 then
    record(next_id(now), now + reset_r - window, {deficit, 0, 0, 0}, true, false)
    added = true
  end
end
if reset_t > 0 then
  local di, dout, dx = 0, 0, 0
  if L[3] >= 0 and R[3] >= 0 then di = math.max(0, (L[3] - s[2]) - R[3]) end
  if L[4] >= 0 and R[4] >= 0 then dout = math.max(0, (L[4] - s[3]) - R[4]) end
  -- The combined count, after the input and output deficits: only what they leave.
  if L[2] >= 0 and R[2] >= 0 then
    dx = math.max(0, (L[2] - (s[2] + s[3] + s[4] + di + dout)) - R[2])
  end
  if di + dout + dx > 0 then
    record(next_id(now), now + reset_t - window, {0, di, dout, dx}, true, false)
    added = true
  end
end
if added then
  redis.call('HSET', S, 'now', fmt(now), 'win', fmt(window))
  expire(W, {C, S, ID}, now, window)
end
return {}
"#;

/// ARGV: window; daily (0/1); paused for (µs, 0 = not); n; then n times: age (µs), requests,
/// input, output, extra, in window (0/1), in day (0/1). Returns the n new ids (0 for a
/// charge that had expired meanwhile).
const IMPORT: &str = r#"
local window = tonumber(ARGV[1])
local daily = ARGV[2] == '1'
local paused_for = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local now = clock()
prune(W, C, S, WF, now - window)
if daily then prune(DW, DC, DS, DF, now - DAY) end
local ids = {}
for j = 0, n - 1 do
  local base = 5 + j * 7
  local score = now - tonumber(ARGV[base])
  local a = {tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])}
  local in_window = ARGV[base + 5] == '1' and score > now - window
  local in_day = daily and ARGV[base + 6] == '1' and score > now - DAY
  if in_window or in_day then
    local id = next_id(now)
    record(id, score, a, in_window, in_day)
    ids[#ids + 1] = id
  else
    ids[#ids + 1] = 0
  end
end
set_pause(now, now + paused_for)
redis.call('HSET', S, 'now', fmt(now), 'win', fmt(window))
expire(W, {C, S, ID}, now, window)
if daily then expire(DW, {DC, DS}, now, DAY) end
return ids
"#;

// ---------------------------------------------------------------------------------------
// The fallback: the same rule in process, for the duration of an outage. Private rather
// than the in-process backend because recovery must read its charges back out.

/// A charge the fallback holds. Times are µs since the fallback's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    id: u64,
    at: i64,
    /// Requests, input, output, extra tokens (calibration's; combined limit only).
    amounts: [u64; 4],
    /// Counts against the window limits (while `at > now - window`).
    in_window: bool,
    /// Counts against the daily limits (while `at > now - DAY_US`).
    in_day: bool,
}

#[derive(Debug, Default)]
struct FallbackLane {
    window: i64,
    paused_until: i64,
    /// Sorted by `at`.
    charges: Vec<Held>,
}

/// Each limit as weights over [`Held::amounts`].
const W_REQUESTS: [i128; 4] = [1, 0, 0, 0];
const W_TOKENS: [i128; 4] = [0, 1, 1, 1];
const W_INPUT: [i128; 4] = [0, 1, 0, 0];
const W_OUTPUT: [i128; 4] = [0, 0, 1, 0];
/// Calibration's extra tokens stand for the window's combined count, not the day's.
const W_DAY_TOKENS: [i128; 4] = [0, 1, 1, 0];

struct Need {
    weights: [i128; 4],
    excess: i128,
}

fn excesses(caps: &[(Option<u64>, [i128; 4])], used: [i128; 4], charge: [u64; 4]) -> Vec<Need> {
    caps.iter()
        .filter_map(|&(limit, weights)| {
            let limit = i128::from(limit?);
            let total: i128 = (0..4)
                .map(|k| weights[k] * (used[k] + i128::from(charge[k])))
                .sum();
            (total > limit).then_some(Need {
                weights,
                excess: total - limit,
            })
        })
        .collect()
}

/// When enough of `charges` (oldest first) will have expired to meet every need.
fn fit_time<'a>(
    charges: impl Iterator<Item = &'a Held>,
    needs: &mut [Need],
    span: i64,
) -> Option<i64> {
    for held in charges {
        let mut met = true;
        for need in needs.iter_mut() {
            need.excess -= (0..4)
                .map(|k| need.weights[k] * i128::from(held.amounts[k]))
                .sum::<i128>();
            met &= need.excess <= 0;
        }
        if met {
            return Some(held.at.saturating_add(span));
        }
    }
    None
}

fn sum<'a>(charges: impl Iterator<Item = &'a Held>) -> [i128; 4] {
    charges.fold([0; 4], |mut acc, held| {
        for (total, amount) in acc.iter_mut().zip(held.amounts) {
            *total += i128::from(amount);
        }
        acc
    })
}

impl FallbackLane {
    fn prune(&mut self, now: i64) {
        let window = self.window;
        self.charges
            .retain(|h| (h.in_window && h.at > now - window) || (h.in_day && h.at > now - DAY_US));
    }

    fn is_idle(&self, now: i64) -> bool {
        self.charges.is_empty() && self.paused_until <= now
    }

    fn insert(&mut self, held: Held) {
        let at = self.charges.partition_point(|h| h.at <= held.at);
        self.charges.insert(at, held);
    }

    fn in_window(&self, now: i64) -> impl Iterator<Item = &Held> + Clone {
        let cutoff = now - self.window;
        self.charges
            .iter()
            .filter(move |h| h.in_window && h.at > cutoff)
    }

    fn in_day(&self, now: i64) -> impl Iterator<Item = &Held> + Clone {
        self.charges
            .iter()
            .filter(move |h| h.in_day && h.at > now - DAY_US)
    }

    /// Admits `charge` as `id`, or says how long until it fits (µs).
    fn reserve(
        &mut self,
        limits: Limits,
        window: i64,
        charge: Charge,
        id: u64,
        now: i64,
    ) -> Result<(), i64> {
        self.window = window;
        self.prune(now);
        let amounts = [charge.requests, charge.input, charge.output, 0];
        let mut ready = now.max(self.paused_until);
        let window_caps = [
            (limits.requests, W_REQUESTS),
            (limits.tokens, W_TOKENS),
            (limits.input_tokens, W_INPUT),
            (limits.output_tokens, W_OUTPUT),
        ];
        let mut needs = excesses(&window_caps, sum(self.in_window(now)), amounts);
        if !needs.is_empty() {
            let fit = fit_time(self.in_window(now), &mut needs, window);
            ready = ready.max(fit.unwrap_or(now + window));
        }
        let daily = limits.requests_per_day.is_some() || limits.tokens_per_day.is_some();
        if daily {
            let day_caps = [
                (limits.requests_per_day, W_REQUESTS),
                (limits.tokens_per_day, W_DAY_TOKENS),
            ];
            let mut needs = excesses(&day_caps, sum(self.in_day(now)), amounts);
            if !needs.is_empty() {
                let fit = fit_time(self.in_day(now), &mut needs, DAY_US);
                ready = ready.max(fit.unwrap_or(now + DAY_US));
            }
        }
        if ready > now {
            return Err(ready - now);
        }
        self.insert(Held {
            id,
            at: now,
            amounts,
            in_window: true,
            in_day: daily,
        });
        Ok(())
    }

    fn calibrate(
        &mut self,
        limits: Limits,
        window: i64,
        observed: Observed,
        ids: &mut u64,
        now: i64,
    ) {
        self.window = window;
        self.prune(now);
        let used = sum(self.in_window(now));
        let reset = |d: Option<Duration>| d.map_or(window, micros);
        let deficit =
            |limit: Option<u64>, used: i128, remaining: Option<u64>| match (limit, remaining) {
                (Some(limit), Some(remaining)) => {
                    u64::try_from(i128::from(limit) - used - i128::from(remaining)).unwrap_or(0)
                }
                _ => 0,
            };
        let mut add = |amounts: [u64; 4], reset: i64| {
            if reset > 0 && amounts.iter().any(|&a| a > 0) {
                *ids += 1;
                self.insert(Held {
                    id: FALLBACK_ID_BIT | *ids,
                    at: now + reset - window,
                    amounts,
                    in_window: true,
                    in_day: false,
                });
            }
        };
        let dr = deficit(limits.requests, used[0], observed.remaining_requests);
        add([dr, 0, 0, 0], reset(observed.reset_requests));
        let di = deficit(
            limits.input_tokens,
            used[1],
            observed.remaining_input_tokens,
        );
        let dout = deficit(
            limits.output_tokens,
            used[2],
            observed.remaining_output_tokens,
        );
        let tokens_used = used[1] + used[2] + used[3] + i128::from(di) + i128::from(dout);
        let dx = deficit(limits.tokens, tokens_used, observed.remaining_tokens);
        add([0, di, dout, dx], reset(observed.reset_tokens));
    }
}

/// What [`Fallback::begin_carry`] hands to Redis.
#[derive(Debug)]
struct Carried {
    now: i64,
    paused_for: i64,
    charges: Vec<Held>,
}

/// A fallback charge already copied into Redis.
#[derive(Debug, Clone, Copy)]
struct Moved {
    redis_id: u64,
    /// When keeping the mapping stops mattering (the copy has expired).
    until: i64,
}

/// Corrections for charges that changed while they were being copied.
#[derive(Debug, PartialEq, Eq)]
enum Fixup {
    Settle(u64, Charge),
    Cancel(u64),
}

#[derive(Debug)]
struct Fallback {
    origin: Instant,
    next_id: u64,
    lanes: HashMap<Lane, FallbackLane>,
    /// Lanes being copied into Redis right now: one copier at a time, or the charges
    /// would be counted twice.
    carrying: HashSet<Lane>,
    /// Fallback ids already copied into Redis, so a late settle or cancel follows them.
    moved: HashMap<u64, Moved>,
}

impl Fallback {
    fn new() -> Fallback {
        Fallback {
            origin: Instant::now(),
            next_id: 0,
            lanes: HashMap::new(),
            carrying: HashSet::new(),
            moved: HashMap::new(),
        }
    }

    fn now(&self) -> i64 {
        micros(self.origin.elapsed())
    }

    fn reserve(
        &mut self,
        lane: &Lane,
        limits: Limits,
        window: i64,
        charge: Charge,
        now: i64,
    ) -> Result<u64, i64> {
        let id = FALLBACK_ID_BIT | (self.next_id + 1);
        let entry = self.lanes.entry(lane.clone()).or_default();
        let outcome = entry.reserve(limits, window, charge, id, now);
        if entry.is_idle(now) {
            self.lanes.remove(lane);
        }
        outcome.map(|()| {
            self.next_id += 1;
            id
        })
    }

    /// Settles a fallback reservation here, or says where it went in Redis.
    fn settle(&mut self, reservation: &Reservation, actual: Charge, now: i64) -> Option<u64> {
        if let Some(entry) = self.lanes.get_mut(&reservation.lane) {
            entry.prune(now);
            if let Some(held) = entry.charges.iter_mut().find(|h| h.id == reservation.id) {
                held.amounts = [
                    actual.requests,
                    actual.input,
                    actual.output,
                    held.amounts[3],
                ];
                return None;
            }
        }
        self.moved.get(&reservation.id).map(|m| m.redis_id)
    }

    /// Cancels a fallback reservation here, or says where it went in Redis.
    fn cancel(&mut self, reservation: &Reservation, now: i64) -> Option<u64> {
        if let Some(entry) = self.lanes.get_mut(&reservation.lane) {
            entry.prune(now);
            if let Some(at) = entry.charges.iter().position(|h| h.id == reservation.id) {
                entry.charges.remove(at);
                if entry.is_idle(now) {
                    self.lanes.remove(&reservation.lane);
                }
                return None;
            }
        }
        self.moved.remove(&reservation.id).map(|m| m.redis_id)
    }

    fn pause(&mut self, lane: &Lane, after: i64, now: i64) {
        let entry = self.lanes.entry(lane.clone()).or_default();
        entry.paused_until = entry.paused_until.max(now.saturating_add(after));
    }

    fn calibrate(
        &mut self,
        lane: &Lane,
        limits: Limits,
        window: i64,
        observed: Observed,
        now: i64,
    ) {
        let entry = self.lanes.entry(lane.clone()).or_default();
        entry.calibrate(limits, window, observed, &mut self.next_id, now);
        if entry.is_idle(now) {
            self.lanes.remove(lane);
        }
    }

    /// The lane's live charges to copy into Redis, if it has any and no one else is
    /// copying them.
    fn begin_carry(&mut self, lane: &Lane, now: i64) -> Option<Carried> {
        let entry = self.lanes.get_mut(lane)?;
        if self.carrying.contains(lane) {
            return None;
        }
        entry.prune(now);
        if entry.is_idle(now) {
            self.lanes.remove(lane);
            return None;
        }
        let carried = Carried {
            now,
            paused_for: (entry.paused_until - now).max(0),
            charges: entry.charges.clone(),
        };
        self.carrying.insert(lane.clone());
        Some(carried)
    }

    /// Forgets what was copied (`ids[k]` is where `carried.charges[k]` went, 0 if it had
    /// expired), remembering where each went; returns corrections for charges settled or
    /// cancelled while the copy was in flight.
    fn finish_carry(
        &mut self,
        lane: &Lane,
        carried: &Carried,
        ids: &[i64],
        window: i64,
        now: i64,
    ) -> Vec<Fixup> {
        self.carrying.remove(lane);
        self.moved.retain(|_, m| m.until > now);
        let mut fixups = Vec::new();
        let Some(entry) = self.lanes.get_mut(lane) else {
            return fixups;
        };
        for (held, &redis_id) in carried.charges.iter().zip(ids) {
            let current = entry.charges.iter().position(|h| h.id == held.id);
            let current = current.map(|at| entry.charges.remove(at));
            let Ok(redis_id) = u64::try_from(redis_id) else {
                continue;
            };
            if redis_id == 0 {
                continue;
            }
            match current {
                Some(now_held) => {
                    if now_held.amounts != held.amounts {
                        let [requests, input, output, _] = now_held.amounts;
                        fixups.push(Fixup::Settle(
                            redis_id,
                            Charge {
                                requests,
                                input,
                                output,
                            },
                        ));
                    }
                    let span = if held.in_day { DAY_US } else { window };
                    self.moved.insert(
                        held.id,
                        Moved {
                            redis_id,
                            until: held.at.saturating_add(span),
                        },
                    );
                }
                None => fixups.push(Fixup::Cancel(redis_id)),
            }
        }
        if entry.paused_until <= carried.now + carried.paused_for {
            entry.paused_until = 0;
        }
        if entry.is_idle(now) {
            self.lanes.remove(lane);
        }
        fixups
    }

    fn abandon_carry(&mut self, lane: &Lane) {
        self.carrying.remove(lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000;
    const SEC: i64 = 1_000_000;

    fn lane() -> Lane {
        Lane {
            upstream: "openai".into(),
            model: "gpt-4o".into(),
        }
    }

    fn tokens(input: u64, output: u64) -> Charge {
        Charge {
            requests: 1,
            input,
            output,
        }
    }

    fn reservation(id: u64) -> Reservation {
        Reservation {
            lane: lane(),
            id,
            charge: Charge::default(),
        }
    }

    #[test]
    fn keys_share_one_hash_tag_per_lane() {
        let backend = RedisBackend::new("redis://127.0.0.1/", "tp:adm:").unwrap();
        let keys = backend.lane_keys(&lane());
        assert_eq!(keys[0], "tp:adm:{openai:gpt-4o}:w");
        assert_eq!(keys[7], "tp:adm:{openai:gpt-4o}:ds");
        assert!(keys.iter().all(|k| k.contains("{openai:gpt-4o}")));
    }

    #[test]
    fn a_bad_url_is_an_error_without_the_password() {
        let err = RedisBackend::new("redis://:hunter2@/", "p:").unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn fallback_retry_in_is_exact() {
        let mut fallback = Fallback::new();
        let limits = Limits {
            requests: Some(3),
            tokens: Some(1_000),
            ..Limits::default()
        };
        let w = SEC;
        fallback
            .reserve(&lane(), limits, w, tokens(400, 0), 0)
            .unwrap();
        fallback
            .reserve(&lane(), limits, w, tokens(400, 0), 300 * MS)
            .unwrap();
        // 800 + 300 > 1000: the first charge (400) makes room, at 0 + 1 s.
        assert_eq!(
            fallback.reserve(&lane(), limits, w, tokens(300, 0), 500 * MS),
            Err(500 * MS)
        );
        // 800 + 700: both must go; the second leaves at 1.3 s.
        assert_eq!(
            fallback.reserve(&lane(), limits, w, tokens(0, 700), 500 * MS),
            Err(800 * MS)
        );
        fallback
            .reserve(&lane(), limits, w, tokens(100, 0), 500 * MS)
            .unwrap();
        // Requests: three counted; the oldest leaves at 1 s.
        assert_eq!(
            fallback.reserve(&lane(), limits, w, tokens(0, 0), 600 * MS),
            Err(400 * MS)
        );
        // At exactly t + window the charge no longer counts.
        fallback
            .reserve(&lane(), limits, w, tokens(300, 0), SEC)
            .unwrap();
    }

    #[test]
    fn fallback_settle_cancel_pause() {
        let mut fallback = Fallback::new();
        let limits = Limits {
            tokens: Some(100),
            ..Limits::default()
        };
        let id = fallback
            .reserve(&lane(), limits, SEC, tokens(90, 0), 0)
            .unwrap();
        assert_ne!(id & FALLBACK_ID_BIT, 0);
        assert!(
            fallback
                .reserve(&lane(), limits, SEC, tokens(20, 0), 0)
                .is_err()
        );
        assert_eq!(fallback.settle(&reservation(id), tokens(10, 0), 0), None);
        fallback
            .reserve(&lane(), limits, SEC, tokens(20, 0), 0)
            .unwrap();
        assert_eq!(fallback.cancel(&reservation(id), 0), None);
        fallback
            .reserve(&lane(), limits, SEC, tokens(70, 0), 0)
            .unwrap();
        fallback.pause(&lane(), 200 * MS, 0);
        fallback.pause(&lane(), 100 * MS, 0);
        assert_eq!(
            fallback.reserve(&lane(), limits, SEC, tokens(0, 0), 50 * MS),
            Err(150 * MS)
        );
    }

    #[test]
    fn fallback_daily_limits_count_for_a_day() {
        let mut fallback = Fallback::new();
        let limits = Limits {
            requests_per_day: Some(2),
            ..Limits::default()
        };
        fallback
            .reserve(&lane(), limits, SEC, tokens(1, 1), 0)
            .unwrap();
        fallback
            .reserve(&lane(), limits, SEC, tokens(1, 1), 5 * SEC)
            .unwrap();
        assert_eq!(
            fallback.reserve(&lane(), limits, SEC, tokens(1, 1), 10 * SEC),
            Err(DAY_US - 10 * SEC)
        );
    }

    #[test]
    fn fallback_calibration_only_tightens() {
        let mut fallback = Fallback::new();
        let limits = Limits {
            tokens: Some(1_000),
            ..Limits::default()
        };
        fallback
            .reserve(&lane(), limits, SEC, tokens(100, 0), 0)
            .unwrap();
        // The upstream has 500 left where the ledger thinks 900: 400 more, until 300 ms.
        let observed = Observed {
            remaining_tokens: Some(500),
            reset_tokens: Some(Duration::from_millis(300)),
            ..Observed::default()
        };
        fallback.calibrate(&lane(), limits, SEC, observed, 0);
        assert_eq!(
            fallback.reserve(&lane(), limits, SEC, tokens(600, 0), 0),
            Err(300 * MS)
        );
        // More left upstream than in the ledger: nothing changes.
        let loose = Observed {
            remaining_tokens: Some(1_000),
            ..Observed::default()
        };
        fallback.calibrate(&lane(), limits, SEC, loose, 0);
        fallback
            .reserve(&lane(), limits, SEC, tokens(500, 0), 0)
            .unwrap();
    }

    #[test]
    fn carrying_over_maps_ids_and_reports_changes() {
        let mut fallback = Fallback::new();
        let limits = Limits {
            requests: Some(10),
            ..Limits::default()
        };
        let a = fallback
            .reserve(&lane(), limits, SEC, tokens(5, 5), 0)
            .unwrap();
        let b = fallback
            .reserve(&lane(), limits, SEC, tokens(5, 5), 0)
            .unwrap();
        let c = fallback
            .reserve(&lane(), limits, SEC, tokens(5, 5), 0)
            .unwrap();
        let carried = fallback.begin_carry(&lane(), 10 * MS).unwrap();
        assert_eq!(carried.charges.len(), 3);
        assert!(
            fallback.begin_carry(&lane(), 10 * MS).is_none(),
            "one copier"
        );
        // While in flight: b settled, c cancelled.
        assert_eq!(
            fallback.settle(&reservation(b), tokens(1, 1), 20 * MS),
            None
        );
        assert_eq!(fallback.cancel(&reservation(c), 20 * MS), None);
        let fixups = fallback.finish_carry(&lane(), &carried, &[7, 8, 9], SEC, 30 * MS);
        assert_eq!(
            fixups,
            vec![Fixup::Settle(8, tokens(1, 1)), Fixup::Cancel(9)]
        );
        assert!(fallback.lanes.is_empty());
        assert_eq!(
            fallback.settle(&reservation(a), tokens(0, 0), 40 * MS),
            Some(7)
        );
        assert_eq!(fallback.cancel(&reservation(a), 40 * MS), Some(7));
        assert_eq!(fallback.cancel(&reservation(a), 40 * MS), None);
    }
}

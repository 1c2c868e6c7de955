//! [`RateLimiter`]: GCRA (the generic cell rate algorithm) in one Lua script, so every process
//! sharing Redis shares each key's budget, and a check is one atomic round trip.

use std::sync::LazyLock;
use std::time::Duration;

use super::{RedisConnection, RedisError};

/// GCRA on the server's clock (`TIME`, microseconds). KEYS[1]: the key's theoretical arrival time.
/// ARGV: emission interval (µs), burst (requests), cost (requests).
/// Returns {allowed (0/1), remaining, retry_after µs, reset_after µs}.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - interval * burst
if allow_at > now then
  local remaining = math.floor((now - (tat - interval * burst)) / interval)
  if remaining < 0 then remaining = 0 end
  return {0, remaining, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
",
    )
});

/// A limit: `burst` requests at once, refilled at `rate` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per period, sustained.
    pub rate: u32,
    /// The period.
    pub period: Duration,
    /// Requests allowed at once (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `rate` per `period`, with a burst of `rate`.
    pub fn per(rate: u32, period: Duration) -> Self {
        Self {
            rate,
            period,
            burst: rate,
        }
    }

    /// The same limit with another burst.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    fn interval_us(&self) -> Result<u64, RedisError> {
        let invalid = |reason: &str| RedisError::InvalidConfig {
            field: "rate_limit",
            reason: format!("{self:?}: {reason}"),
        };
        if self.rate == 0 || self.burst == 0 {
            return Err(invalid("rate and burst must be at least 1"));
        }
        let us = self.period.as_micros() / u128::from(self.rate);
        if us == 0 || us > u128::from(u32::MAX) * 1_000_000 {
            return Err(invalid("one request per 1 µs to ~136 years"));
        }
        Ok(us as u64)
    }
}

/// What the limiter does when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Allow every request (availability over protection); the default.
    #[default]
    Open,
    /// Refuse every request (protection over availability).
    Closed,
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Requests left right now after this one.
    pub remaining: u32,
    /// When refused: how long until the request would be allowed.
    pub retry_after: Duration,
    /// How long until the key's whole burst is available again.
    pub reset_after: Duration,
    /// True when Redis could not answer and the [`FailMode`] decided.
    pub degraded: bool,
}

/// A distributed rate limiter: each key's budget is shared by every process using the same Redis
/// and key prefix.
///
/// ```no_run
/// # async fn demo(redis: evently_storage::redis::RedisConnection) -> Result<(), evently_storage::redis::RedisError> {
/// use std::time::Duration;
/// use evently_storage::redis::{FailMode, RateLimit, RateLimiter};
///
/// let limiter = RateLimiter::new(redis, FailMode::Open);
/// let limit = RateLimit::per(10, Duration::from_secs(1)).burst(20);
/// let d = limiter.check("user:42:book", limit).await?;
/// if !d.allowed {
///     println!("retry in {:?}", d.retry_after);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    redis: RedisConnection,
    fail_mode: FailMode,
}

impl RateLimiter {
    /// A limiter on `redis` answering by `fail_mode` when Redis cannot.
    pub fn new(redis: RedisConnection, fail_mode: FailMode) -> Self {
        Self { redis, fail_mode }
    }

    /// The fail mode.
    pub fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }

    /// Takes one request from `key`'s budget under `limit`.
    pub async fn check(&self, key: &str, limit: RateLimit) -> Result<Decision, RedisError> {
        self.check_n(key, limit, 1).await
    }

    /// Takes `cost` requests at once (all or none). Errors only for an invalid `limit` or `cost`
    /// (more than the burst can never pass) and for a script Redis refuses; an unreachable Redis is
    /// answered by the fail mode.
    pub async fn check_n(
        &self,
        key: &str,
        limit: RateLimit,
        cost: u32,
    ) -> Result<Decision, RedisError> {
        let interval = limit.interval_us()?;
        if cost == 0 || cost > limit.burst {
            return Err(RedisError::InvalidConfig {
                field: "cost",
                reason: format!("{cost} is not within 1 to the burst {}", limit.burst),
            });
        }
        let redis_key = self.redis.key(&format!("rate:{key}"));
        let answer = self
            .redis
            .run(|mut c| async move {
                GCRA.key(redis_key)
                    .arg(interval)
                    .arg(limit.burst)
                    .arg(cost)
                    .invoke_async::<(i64, i64, i64, i64)>(&mut c)
                    .await
            })
            .await;
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        match answer {
            Ok((allowed, remaining, retry_after, reset_after)) => Ok(Decision {
                allowed: allowed == 1,
                remaining: u32::try_from(remaining).unwrap_or(0),
                retry_after: us(retry_after),
                reset_after: us(reset_after),
                degraded: false,
            }),
            Err(RedisError::Unavailable { message }) => {
                tracing::warn!(key, fail_mode = ?self.fail_mode, error = %message, "rate limiter without Redis");
                let period = Duration::from_micros(interval.saturating_mul(u64::from(cost)));
                Ok(match self.fail_mode {
                    FailMode::Open => Decision {
                        allowed: true,
                        remaining: 0,
                        retry_after: Duration::ZERO,
                        reset_after: Duration::ZERO,
                        degraded: true,
                    },
                    FailMode::Closed => Decision {
                        allowed: false,
                        remaining: 0,
                        retry_after: period,
                        reset_after: period,
                        degraded: true,
                    },
                })
            }
            Err(other) => Err(other),
        }
    }
}

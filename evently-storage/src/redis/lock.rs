//! [`DistributedLock`]: a lease in Redis (`SET NX PX`) with a fencing token: every grant of a name
//! gets a strictly higher number, so a resource can refuse writes from an owner whose lease ran out.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::{RedisConnection, RedisError};

/// KEYS[1]: the lease, KEYS[2]: the name's token counter. ARGV: owner, lease in ms.
/// Returns the new token, or nil when the lease is held.
static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
",
    )
});

/// KEYS[1]: the lease. ARGV: owner. 1 when released, 0 when the owner no longer holds it.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// KEYS[1]: the lease. ARGV: owner, lease in ms. 1 when extended, 0 when no longer held.
static EXTEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// A number that grows with every grant of a lock's name: pass it with each write to the protected
/// resource, which keeps the highest it has seen and refuses lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Distributed locks (leases) on one Redis.
///
/// ```no_run
/// # async fn demo(redis: evently_storage::redis::RedisConnection) -> Result<(), evently_storage::redis::RedisError> {
/// use std::time::Duration;
/// use evently_storage::redis::DistributedLock;
///
/// let locks = DistributedLock::new(redis);
/// let guard = locks.acquire("reports:daily", Duration::from_secs(30)).await?;
/// let token = guard.token(); // send it with every write the lock protects
/// // … work …
/// guard.release().await?; // Err(LockLost) if the lease ran out meanwhile
/// # let _ = token; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DistributedLock {
    redis: RedisConnection,
}

/// A granted lease. Dropping it does not release it (that needs Redis): call
/// [`LockGuard::release`], or let the lease expire.
#[derive(Debug)]
#[must_use = "a lock guard should be released"]
pub struct LockGuard {
    redis: RedisConnection,
    name: String,
    key: String,
    owner: String,
    token: FencingToken,
}

impl DistributedLock {
    /// Locks on `redis`.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    /// Takes the lock `name` for `lease` if it is free: [`RedisError::LockBusy`] if not,
    /// [`RedisError::Unavailable`] without Redis.
    pub async fn acquire(&self, name: &str, lease: Duration) -> Result<LockGuard, RedisError> {
        let lease_ms = lease_ms(lease)?;
        let key = self.redis.key(&format!("lock:{{{name}}}"));
        let counter = self.redis.key(&format!("lock:{{{name}}}:token"));
        let owner = uuid::Uuid::new_v4().to_string();
        let (k, o) = (key.clone(), owner.clone());
        // Until the answer is in, the lease may have been granted to an owner nobody will ever
        // release as (the caller went away, or the answer was lost): the guard then releases it.
        let mut unanswered = Unanswered {
            redis: &self.redis,
            key: &key,
            owner: &owner,
            answered: false,
        };
        let token: Option<u64> = self
            .redis
            .run(|mut c| async move {
                ACQUIRE
                    .key(k)
                    .key(counter)
                    .arg(o)
                    .arg(lease_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        unanswered.answered = true;
        drop(unanswered);
        match token {
            Some(t) => Ok(LockGuard {
                redis: self.redis.clone(),
                name: name.to_string(),
                key,
                owner,
                token: FencingToken(t),
            }),
            None => Err(RedisError::LockBusy {
                name: name.to_string(),
            }),
        }
    }

    /// Like [`DistributedLock::acquire`], trying again (every 10 ms, doubling to 200 ms) while the
    /// lock is busy, for at most `wait`.
    pub async fn acquire_within(
        &self,
        name: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<LockGuard, RedisError> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(10);
        loop {
            match self.acquire(name, lease).await {
                Err(RedisError::LockBusy { .. }) if Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }
}

/// An `ACQUIRE` whose answer has not been taken. Dropped so (its future dropped, or Redis failed
/// after it may have run the script), it releases the lease in the background if this owner holds
/// it; `RELEASE` leaves a lease of any other owner alone.
struct Unanswered<'a> {
    redis: &'a RedisConnection,
    key: &'a str,
    owner: &'a str,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (redis, key, owner) = (
            self.redis.clone(),
            self.key.to_string(),
            self.owner.to_string(),
        );
        runtime.spawn(async move {
            let released = redis
                .run(|mut c| async move {
                    RELEASE
                        .key(key)
                        .arg(owner)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await;
            if let Err(e) = released {
                tracing::debug!(error = %e, "releasing an unanswered lock grant failed; it ends with its lease");
            }
        });
    }
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This grant's fencing token.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Renews the lease for `lease` from now; [`RedisError::LockLost`] if it already ran out.
    pub async fn extend(&self, lease: Duration) -> Result<(), RedisError> {
        let lease_ms = lease_ms(lease)?;
        let (k, o) = (self.key.clone(), self.owner.clone());
        let ok: i64 = self
            .redis
            .run(|mut c| async move {
                EXTEND
                    .key(k)
                    .arg(o)
                    .arg(lease_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if ok == 1 { Ok(()) } else { Err(self.lost()) }
    }

    /// Releases the lock; [`RedisError::LockLost`] if the lease ran out before (someone else may
    /// hold it now: it is left alone).
    pub async fn release(self) -> Result<(), RedisError> {
        let (k, o) = (self.key.clone(), self.owner.clone());
        let ok: i64 = self
            .redis
            .run(|mut c| async move { RELEASE.key(k).arg(o).invoke_async(&mut c).await })
            .await?;
        if ok == 1 { Ok(()) } else { Err(self.lost()) }
    }

    fn lost(&self) -> RedisError {
        RedisError::LockLost {
            name: self.name.clone(),
            token: self.token.0,
        }
    }
}

fn lease_ms(lease: Duration) -> Result<u64, RedisError> {
    let ms = lease.as_millis();
    if ms == 0 || ms > 24 * 3600 * 1000 {
        return Err(RedisError::InvalidConfig {
            field: "lease",
            reason: format!("{lease:?} is not within 1 ms to 24 h"),
        });
    }
    Ok(ms as u64)
}

//! [`RedisJobQueue`]: the [`JobQueue`] port on Redis, for workers that should not poll the store.
//!
//! # Layout
//!
//! Every key of a queue named `N` starts with the connection's prefix and `jobq:{N}:` (the braces are
//! a Redis Cluster hash tag: all of a queue's keys live in one slot). The scripts name the queue's sets
//! in `KEYS` but build the job hashes' names themselves, which a single Redis allows; on Redis
//! Cluster it works only because they share the slot, and it is not tested there.
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `job:<id>` | hash | one job: `payload` (JSON), `kind`, `priority`, `status`, `run_at`, `m`, `attempts`, `max_attempts`, `created_at`, optional `dedupe_key`, `last_error`, `locked_until` (times in µs since the epoch) |
//! | `delayed` | sorted set | queued jobs not yet seen due, scored by `run_at` (µs) |
//! | `ready` | sorted set | queued jobs that were due at some claim, scored by `-priority`; equal scores sort by member, and the member `m` is `<run_at as 20 fixed-width digits>:<id>`, so the set is in claim order (priority, then oldest, then id) |
//! | `running` | sorted set | claimed jobs, scored by `locked_until` (µs), member the id |
//! | `retrying` | set | ids of queued jobs that failed at least once |
//! | `done` | sorted set | ids of finished jobs still retained, scored by completion wall-clock time (ms) |
//! | `dead` | set | ids of dead jobs (their hashes are kept, with `last_error`) |
//! | `dedupe` | hash | dedupe key → id of the live (queued or running) job holding it |
//!
//! # Semantics
//!
//! Those of the SQL stores' queues: `enqueue` and `accept` put a job in `delayed`; `claim` (one Lua
//! script) first moves the jobs due at the caller's `now` from `delayed` to `ready` (at most
//! [`PROMOTE_PER_CLAIM`] a call), then takes up to `limit` jobs from the head of `ready` merged with
//! the running jobs whose lease lapsed (visibility timeout; at most [`LAPSED_PER_CLAIM`] weighed a
//! call), highest priority first, then oldest, counts an attempt and leases them until `now + lease`. A claimed job that is never completed or failed is thus delivered again once its
//! lease lapses. Time is always the caller's (the engine's clock), never Redis `TIME`, except for the
//! retention of finished jobs: `complete` has no clock argument, so a done job is kept for
//! [`RedisJobQueue::with_retention`] (default 24 h) of wall-clock time (a key TTL), long enough for
//! [`JobQueue::accept`] to stay idempotent for a relayed job that already ran. Dead jobs are kept until
//! deleted by hand. A job whose hash cannot be decoded is made dead with the reason instead of jamming
//! the queue.
//!
//! Concurrent `enqueue`/`accept` calls, and concurrent `complete` calls, of one process go to Redis
//! as one script call each (a group commit of up to 256), so a worker completing its claimed batch
//! costs one round trip, not one per job.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::JobStats;
use evently_core::{Job, JobId, JobPayload, JobQueue, JobStatus, NewJob, StoreError};

use super::{RedisConnection, RedisError};
use crate::group_commit::Batcher;

type R<T> = Result<T, StoreError>;

/// At most this many newly due jobs move from `delayed` to `ready` in one claim, so one script never
/// blocks Redis for long. When more become due at once, the rest move at the following claims (oldest
/// first), and priority order holds among the moved ones.
pub const PROMOTE_PER_CLAIM: u32 = 5_000;

/// At most this many running jobs whose lease lapsed are weighed in one claim (in order of lapse):
/// among them and the queued jobs, the claim takes the highest priority, then the oldest. Leases
/// that lapse at the same time beyond that number are retaken at the following claims.
pub const LAPSED_PER_CLAIM: u32 = 1_000;

/// The default retention of finished jobs.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Puts queued jobs in. KEYS: delayed, dedupe, retrying. ARGV: 1 job key prefix, then 13 values per
/// job: id, dedupe key, has dedupe key ('1'/'0'), member, run_at µs, payload, priority, attempts,
/// max_attempts, created_at µs, last error, has last error ('1'/'0'), kind.
/// Returns per job 1 when queued, 0 when a live job holds its dedupe key, 2 when the id exists.
static PUT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local jp = ARGV[1]
local out = {}
for b = 2, #ARGV, 13 do
  local id = ARGV[b]
  local k = jp .. id
  if redis.call('EXISTS', k) == 1 then
    out[#out + 1] = 2
  else
    local free = true
    if ARGV[b + 2] == '1' then
      local holder = redis.call('HGET', KEYS[2], ARGV[b + 1])
      if holder then
        local st = redis.call('HGET', jp .. holder, 'status')
        if st == 'queued' or st == 'running' then free = false end
      end
      if free then redis.call('HSET', KEYS[2], ARGV[b + 1], id) end
    end
    if free then
      redis.call('HSET', k, 'payload', ARGV[b + 5], 'kind', ARGV[b + 12], 'priority', ARGV[b + 6],
        'status', 'queued', 'run_at', ARGV[b + 4], 'm', ARGV[b + 3], 'attempts', ARGV[b + 7],
        'max_attempts', ARGV[b + 8], 'created_at', ARGV[b + 9])
      if ARGV[b + 2] == '1' then redis.call('HSET', k, 'dedupe_key', ARGV[b + 1]) end
      if ARGV[b + 11] == '1' then
        redis.call('HSET', k, 'last_error', ARGV[b + 10])
        redis.call('SADD', KEYS[3], id)
      end
      redis.call('ZADD', KEYS[1], ARGV[b + 4], ARGV[b + 3])
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
end
return out
",
    )
});

/// Claims. KEYS: ready, delayed, running, retrying. ARGV: 1 now µs, 2 now as a member prefix,
/// 3 lease end µs, 4 limit, 5 job key prefix, 6 promotion limit, 7 lapsed lease limit.
/// Returns, per claimed job, 9 values: id, payload, priority, run_at, attempts, max_attempts,
/// dedupe_key, last_error, created_at (absent fields nil).
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local jp = ARGV[5]
local limit = tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[6]))
for _, m in ipairs(due) do
  local p = redis.call('HGET', jp .. string.sub(m, 22), 'priority')
  if p then redis.call('ZADD', KEYS[1], -tonumber(p), m) end
  redis.call('ZREM', KEYS[2], m)
end
local cands = {}
local back = {}
local n = 0
local start = 0
local scanned = 0
while n < limit and scanned < 10 * limit + 100 do
  local batch = redis.call('ZRANGE', KEYS[1], start, start + limit - 1, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local m = batch[i]
    scanned = scanned + 1
    if n < limit then
      if string.sub(m, 1, 20) <= ARGV[2] then
        n = n + 1
        cands[#cands + 1] = {tonumber(batch[i + 1]), m, true}
      else
        back[#back + 1] = m
      end
    end
  end
  start = start + limit
end
for _, m in ipairs(back) do
  local ra = redis.call('HGET', jp .. string.sub(m, 22), 'run_at')
  redis.call('ZREM', KEYS[1], m)
  if ra then redis.call('ZADD', KEYS[2], ra, m) end
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(lapsed) do
  local f = redis.call('HMGET', jp .. id, 'priority', 'm')
  if f[1] and f[2] then
    cands[#cands + 1] = {-tonumber(f[1]), f[2], false}
  else
    redis.call('ZREM', KEYS[3], id)
  end
end
table.sort(cands, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
local out = {}
for i = 1, math.min(limit, #cands) do
  local c = cands[i]
  local id = string.sub(c[2], 22)
  local k = jp .. id
  if c[3] then redis.call('ZREM', KEYS[1], c[2]) end
  local f = redis.call('HMGET', k, 'payload', 'priority', 'run_at', 'attempts', 'max_attempts',
    'dedupe_key', 'last_error', 'created_at')
  if f[1] or f[2] or f[3] or f[5] or f[8] then
    redis.call('HSET', k, 'status', 'running', 'locked_until', ARGV[3])
    f[4] = redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('ZADD', KEYS[3], ARGV[3], id)
    if f[7] then redis.call('SREM', KEYS[4], id) end
    out[#out + 1] = id
    for j = 1, 8 do out[#out + 1] = f[j] or false end
  else
    redis.call('ZREM', KEYS[3], id)
  end
end
return out
",
    )
});

/// Marks jobs done. KEYS: ready, delayed, running, retrying, done, dead, dedupe. ARGV: 1 wall-clock ms
/// now, 2 retention ms, 3 oldest retained (`(ms`), 4 job key prefix, 5.. ids. Returns per id 1, or 0
/// when there is no such job.
static COMPLETE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local k = ARGV[4] .. id
  local f = redis.call('HMGET', k, 'status', 'm', 'dedupe_key')
  local st = f[1]
  if not st then
    out[#out + 1] = 0
  else
    if st == 'running' then
      redis.call('ZREM', KEYS[3], id)
      redis.call('HDEL', k, 'locked_until')
    elseif st == 'queued' then
      if f[2] then
        redis.call('ZREM', KEYS[1], f[2])
        redis.call('ZREM', KEYS[2], f[2])
      end
      redis.call('SREM', KEYS[4], id)
    elseif st == 'dead' then
      redis.call('SREM', KEYS[6], id)
    end
    if f[3] and redis.call('HGET', KEYS[7], f[3]) == id then redis.call('HDEL', KEYS[7], f[3]) end
    redis.call('HSET', k, 'status', 'done')
    redis.call('PEXPIRE', k, ARGV[2])
    redis.call('ZADD', KEYS[5], ARGV[1], id)
    out[#out + 1] = 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[3])
return out
",
    )
});

/// Records a failed attempt. KEYS: job hash, ready, delayed, running, retrying, done, dead, dedupe.
/// ARGV: 1 id, 2 error, 3 retry ('1'/'0'), 4 retry run_at µs, 5 retry member. 0 when no such job.
static FAIL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'status', 'm', 'dedupe_key')
if not f[1] then return 0 end
if f[2] then
  redis.call('ZREM', KEYS[2], f[2])
  redis.call('ZREM', KEYS[3], f[2])
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('SREM', KEYS[7], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'last_error', ARGV[2])
redis.call('HDEL', KEYS[1], 'locked_until')
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'run_at', ARGV[4], 'm', ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
  redis.call('SADD', KEYS[5], ARGV[1])
  if f[3] then redis.call('HSETNX', KEYS[8], f[3], ARGV[1]) end
else
  redis.call('HSET', KEYS[1], 'status', 'dead')
  redis.call('SADD', KEYS[7], ARGV[1])
  if f[3] and redis.call('HGET', KEYS[8], f[3]) == ARGV[1] then redis.call('HDEL', KEYS[8], f[3]) end
end
return 1
",
    )
});

/// Counts. KEYS: ready, delayed, running, done, dead, retrying. ARGV: 1 oldest retained (`(ms`).
/// Returns {queued, retrying, running, done, dead}.
static STATS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
return {redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]), redis.call('SCARD', KEYS[6]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), redis.call('SCARD', KEYS[5])}
",
    )
});

/// A durable job queue in Redis with at-least-once delivery: reliable claims with a visibility timeout
/// (the lease), delayed jobs, priorities, dedupe keys, a dead-letter state and a retention of
/// finished jobs. See the [module](self) for the key layout. Cheap to clone.
///
/// Give it to the engine as its work queue; the store's transactions still write jobs to the store
/// (the outbox) and [`Evently::relay_jobs`](evently_core::Evently::relay_jobs) hands them over:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use evently_storage::redis::{RedisConfig, RedisConnection, RedisJobQueue};
///
/// let redis = RedisConnection::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let queue = RedisJobQueue::new(redis, "jobs")?;
/// let engine = evently_core::Evently::builder()
///     .store(Arc::new(evently_storage::MemoryStore::new()))
///     .queue(Arc::new(queue))
///     .build()?;
/// engine.relay_jobs(100).await?; // outbox -> Redis
/// engine.run_jobs(100).await?; // Redis -> handlers
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisJobQueue {
    redis: RedisConnection,
    keys: std::sync::Arc<Keys>,
    retention: Duration,
    /// Enqueues and hand-overs waiting to be sent together.
    puts: std::sync::Arc<Batcher<Vec<String>>>,
    /// Completions waiting to be sent together.
    completions: std::sync::Arc<Batcher<String>>,
}

impl std::fmt::Debug for RedisJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobQueue")
            .field("redis", &self.redis)
            .field("name", &self.keys.name)
            .field("retention", &self.retention)
            .finish()
    }
}

#[derive(Debug)]
struct Keys {
    name: String,
    /// `<prefix>jobq:{<name>}:job:`
    job: String,
    ready: String,
    delayed: String,
    running: String,
    retrying: String,
    done: String,
    dead: String,
    dedupe: String,
}

impl RedisJobQueue {
    /// The queue `name` on `redis` (under the connection's key prefix), keeping finished jobs for
    /// [`DEFAULT_RETENTION`]. The name is 1 to 64 characters, without braces. Nothing is sent yet.
    pub fn new(redis: RedisConnection, name: &str) -> Result<Self, RedisError> {
        if name.is_empty() || name.len() > 64 || name.contains(['{', '}']) {
            return Err(RedisError::InvalidConfig {
                field: "queue name",
                reason: format!("{name:?} must be 1 to 64 characters without braces"),
            });
        }
        let base = redis.key(&format!("jobq:{{{name}}}:"));
        let k = |s: &str| format!("{base}{s}");
        let keys = Keys {
            name: name.to_string(),
            job: k("job:"),
            ready: k("ready"),
            delayed: k("delayed"),
            running: k("running"),
            retrying: k("retrying"),
            done: k("done"),
            dead: k("dead"),
            dedupe: k("dedupe"),
        };
        Ok(Self {
            redis,
            keys: std::sync::Arc::new(keys),
            retention: DEFAULT_RETENTION,
            puts: std::sync::Arc::new(Batcher::new()),
            completions: std::sync::Arc::new(Batcher::new()),
        })
    }

    /// The same queue keeping finished jobs for `retention` (1 ms to 1 year) of wall-clock time;
    /// within it, [`JobQueue::accept`] of a finished job's id is refused.
    pub fn with_retention(mut self, retention: Duration) -> Result<Self, RedisError> {
        if retention < Duration::from_millis(1) || retention > Duration::from_secs(366 * 86_400) {
            return Err(RedisError::InvalidConfig {
                field: "retention",
                reason: format!("{retention:?} is not within 1 ms to 1 year"),
            });
        }
        self.retention = retention;
        Ok(self)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.keys.name
    }

    /// The retention of finished jobs.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    fn job_key(&self, id: &str) -> String {
        format!("{}{id}", self.keys.job)
    }

    /// Puts `job` in: 1 queued, 0 refused for its dedupe key, 2 the id exists. Concurrent calls go
    /// to Redis together (see [`Batcher`]).
    async fn put(&self, job: &Job) -> R<i64> {
        let args = put_args(job)?;
        let send = |batch: Vec<Vec<String>>| self.put_batch(batch);
        match self.puts.submit(args.clone(), send).await {
            Some(r) => r,
            // The leader was cancelled: put it alone (a repeat finds the id and answers 2).
            None => Ok(self.put_batch(vec![args]).await?[0]),
        }
    }

    /// One PUT script call for `batch` (each: the script's 13 values of one job).
    async fn put_batch(&self, batch: Vec<Vec<String>>) -> R<Vec<i64>> {
        let n = batch.len();
        let mut inv = PUT.prepare_invoke();
        inv.key(&self.keys.delayed)
            .key(&self.keys.dedupe)
            .key(&self.keys.retrying)
            .arg(&self.keys.job);
        for args in &batch {
            for a in args {
                inv.arg(a);
            }
        }
        let out: Vec<i64> = self
            .redis
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(store_error)?;
        if out.len() != n {
            return Err(StoreError::Backend {
                message: format!("put script answered {} of {n} jobs", out.len()),
            });
        }
        Ok(out)
    }

    /// Completes `ids` in one script call: per id, whether the job exists.
    async fn complete_batch(&self, ids: Vec<String>) -> R<Vec<i64>> {
        let now = wall_ms();
        let mut inv = COMPLETE.prepare_invoke();
        inv.key(&self.keys.ready)
            .key(&self.keys.delayed)
            .key(&self.keys.running)
            .key(&self.keys.retrying)
            .key(&self.keys.done)
            .key(&self.keys.dead)
            .key(&self.keys.dedupe)
            .arg(now)
            .arg(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX))
            .arg(self.retained_since(now))
            .arg(&self.keys.job);
        for id in &ids {
            inv.arg(id);
        }
        let found: Vec<i64> = self
            .redis
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(store_error)?;
        if found.len() != ids.len() {
            return Err(StoreError::Backend {
                message: format!(
                    "complete script answered {} of {} ids",
                    found.len(),
                    ids.len()
                ),
            });
        }
        tracing::debug!(backend = "redis", queue = %self.keys.name, completed = ids.len(), "complete jobs");
        Ok(found)
    }

    fn state_keys<'a>(
        &self,
        inv: &'a mut redis::ScriptInvocation<'static>,
        id: &str,
    ) -> &'a mut redis::ScriptInvocation<'static> {
        inv.key(self.job_key(id))
            .key(&self.keys.ready)
            .key(&self.keys.delayed)
            .key(&self.keys.running)
            .key(&self.keys.retrying)
            .key(&self.keys.done)
            .key(&self.keys.dead)
            .key(&self.keys.dedupe)
    }

    async fn fail_id(&self, id: &str, error: &str, retry_at: Option<DateTime<Utc>>) -> R<bool> {
        let mut inv = FAIL.prepare_invoke();
        self.state_keys(&mut inv, id)
            .arg(id)
            .arg(error)
            .arg(flag(retry_at.is_some()));
        match retry_at {
            Some(t) => inv.arg(micros(t)).arg(member(micros(t), id)),
            None => inv.arg("0").arg(""),
        };
        let n: i64 = self
            .redis
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(store_error)?;
        Ok(n == 1)
    }

    /// `(<ms>`: the exclusive lower bound of retained completion times.
    fn retained_since(&self, now_ms: i64) -> String {
        let keep = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        format!("({}", now_ms.saturating_sub(keep))
    }
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// `<run_at µs shifted to unsigned, 20 digits>:<id>`: sorts by run_at, then id.
fn member(run_at_us: i64, id: &str) -> String {
    format!("{}:{id}", time_prefix(run_at_us))
}

fn time_prefix(us: i64) -> String {
    format!("{:020}", (i128::from(us) - i128::from(i64::MIN)) as u64)
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn store_error(e: RedisError) -> StoreError {
    match e {
        RedisError::Unavailable { message } => StoreError::Unavailable { message },
        other => StoreError::Backend {
            message: other.to_string(),
        },
    }
}

fn missing_job() -> StoreError {
    StoreError::Backend {
        message: "job does not exist".into(),
    }
}

fn corrupt(id: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        message: format!("job {id}: {what}"),
    }
}

/// The stored fields of one job, as Redis holds them.
#[derive(Default)]
struct Raw {
    id: String,
    payload: Option<String>,
    priority: Option<String>,
    status: Option<String>,
    run_at: Option<String>,
    attempts: Option<String>,
    max_attempts: Option<String>,
    dedupe_key: Option<String>,
    last_error: Option<String>,
    locked_until: Option<String>,
    created_at: Option<String>,
}

impl Raw {
    fn decode(self) -> R<Job> {
        let id = &self.id;
        fn need<'a>(id: &str, f: &'a Option<String>, name: &str) -> R<&'a str> {
            f.as_deref()
                .ok_or_else(|| corrupt(id, format_args!("no {name}")))
        }
        fn num<T: std::str::FromStr>(id: &str, f: &Option<String>, name: &str) -> R<T> {
            need(id, f, name)?
                .parse()
                .map_err(|_| corrupt(id, format_args!("{name} {f:?} is not a number")))
        }
        fn time(id: &str, f: &Option<String>, name: &str) -> R<DateTime<Utc>> {
            DateTime::from_timestamp_micros(num(id, f, name)?)
                .ok_or_else(|| corrupt(id, format_args!("{name} {f:?} is out of range")))
        }
        let uuid = uuid::Uuid::parse_str(id).map_err(|e| corrupt(id, e))?;
        let payload: JobPayload = serde_json::from_str(need(id, &self.payload, "payload")?)
            .map_err(|e| corrupt(id, format_args!("payload: {e}")))?;
        let status = JobStatus::parse(need(id, &self.status, "status")?)
            .ok_or_else(|| corrupt(id, format_args!("status {:?}", self.status)))?;
        Ok(Job {
            id: JobId(uuid),
            payload,
            priority: num(id, &self.priority, "priority")?,
            status,
            run_at: time(id, &self.run_at, "run_at")?,
            attempts: num(id, &self.attempts, "attempts")?,
            max_attempts: num(id, &self.max_attempts, "max_attempts")?,
            dedupe_key: self.dedupe_key,
            last_error: self.last_error,
            locked_until: match &self.locked_until {
                Some(_) => Some(time(id, &self.locked_until, "locked_until")?),
                None => None,
            },
            created_at: time(id, &self.created_at, "created_at")?,
        })
    }
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    fn queue_name(&self) -> &str {
        "redis"
    }

    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>> {
        let j = job.queued(JobId::new());
        // 2: a fresh id exists only when a cancelled batch put it in before this retry.
        let enqueued = self.put(&j).await? != 0;
        tracing::debug!(backend = "redis", queue = %self.keys.name, job_id = %j.id, kind = job.payload.kind(), enqueued, "enqueue job");
        Ok(enqueued.then_some(j.id))
    }

    async fn accept(&self, job: &Job) -> R<bool> {
        Ok(self.put(job).await? == 1)
    }

    async fn claim(&self, limit: u32, now: DateTime<Utc>, lease: Duration) -> R<Vec<Job>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let until = evently_core::ports::lease_end(now, lease);
        let mut inv = CLAIM.prepare_invoke();
        inv.key(&self.keys.ready)
            .key(&self.keys.delayed)
            .key(&self.keys.running)
            .key(&self.keys.retrying)
            .arg(micros(now))
            .arg(time_prefix(micros(now)))
            .arg(micros(until))
            .arg(limit)
            .arg(&self.keys.job)
            .arg(PROMOTE_PER_CLAIM)
            .arg(LAPSED_PER_CLAIM.max(limit));
        let flat: Vec<Option<String>> = self
            .redis
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(store_error)?;
        let mut jobs = Vec::with_capacity(flat.len() / 9);
        let until_us = micros(until).to_string();
        for chunk in flat.chunks(9) {
            let [
                id,
                payload,
                priority,
                run_at,
                attempts,
                max_attempts,
                dedupe_key,
                last_error,
                created_at,
            ] = chunk
            else {
                return Err(StoreError::Backend {
                    message: format!("claim script answered {} values", flat.len()),
                });
            };
            let id = id.clone().unwrap_or_default();
            let raw = Raw {
                id: id.clone(),
                payload: payload.clone(),
                priority: priority.clone(),
                status: Some("running".into()),
                run_at: run_at.clone(),
                attempts: attempts.clone(),
                max_attempts: max_attempts.clone(),
                dedupe_key: dedupe_key.clone(),
                last_error: last_error.clone(),
                locked_until: Some(until_us.clone()),
                created_at: created_at.clone(),
            };
            match raw.decode() {
                Ok(job) => jobs.push(job),
                Err(e) => {
                    // A job that cannot be read back must not jam the queue: it is dead, with the reason.
                    tracing::error!(backend = "redis", queue = %self.keys.name, job_id = %id, error = %e, "undecodable job marked dead");
                    self.fail_id(&id, &e.to_string(), None).await?;
                }
            }
        }
        tracing::debug!(backend = "redis", queue = %self.keys.name, claimed = jobs.len(), "claim jobs");
        Ok(jobs)
    }

    async fn complete(&self, id: JobId) -> R<()> {
        let id = id.0.to_string();
        let send = |batch: Vec<String>| self.complete_batch(batch);
        let found = match self.completions.submit(id.clone(), send).await {
            Some(r) => r?,
            // The leader was cancelled: complete this one alone (completing is idempotent).
            None => self.complete_batch(vec![id]).await?[0],
        };
        if found == 1 {
            Ok(())
        } else {
            Err(missing_job())
        }
    }

    async fn complete_many(&self, ids: &[JobId]) -> R<()> {
        for chunk in ids.chunks(crate::group_commit::BATCH) {
            let found = self
                .complete_batch(chunk.iter().map(|id| id.0.to_string()).collect())
                .await?;
            if found.iter().any(|f| *f != 1) {
                return Err(missing_job());
            }
        }
        Ok(())
    }

    async fn accept_many(&self, jobs: &[Job]) -> R<Vec<bool>> {
        let mut taken = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(crate::group_commit::BATCH) {
            let batch = chunk.iter().map(put_args).collect::<R<Vec<_>>>()?;
            taken.extend(self.put_batch(batch).await?.into_iter().map(|r| r == 1));
        }
        Ok(taken)
    }

    async fn fail(&self, id: JobId, error: &str, retry_at: Option<DateTime<Utc>>) -> R<()> {
        let found = self.fail_id(&id.0.to_string(), error, retry_at).await?;
        tracing::debug!(backend = "redis", queue = %self.keys.name, job_id = %id, retry = retry_at.is_some(), "job failed");
        if found { Ok(()) } else { Err(missing_job()) }
    }

    async fn job(&self, id: JobId) -> R<Option<Job>> {
        let id = id.0.to_string();
        let key = self.job_key(&id);
        let fields: Vec<Option<String>> = self
            .redis
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg(&[
                        "payload",
                        "priority",
                        "status",
                        "run_at",
                        "attempts",
                        "max_attempts",
                        "dedupe_key",
                        "last_error",
                        "locked_until",
                        "created_at",
                    ])
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(store_error)?;
        let [
            payload,
            priority,
            status,
            run_at,
            attempts,
            max_attempts,
            dedupe_key,
            last_error,
            locked_until,
            created_at,
        ] = <[Option<String>; 10]>::try_from(fields).map_err(|f| StoreError::Backend {
            message: format!("HMGET answered {} values", f.len()),
        })?;
        if status.is_none() && payload.is_none() {
            return Ok(None);
        }
        Raw {
            id,
            payload,
            priority,
            status,
            run_at,
            attempts,
            max_attempts,
            dedupe_key,
            last_error,
            locked_until,
            created_at,
        }
        .decode()
        .map(Some)
    }

    async fn stats(&self) -> R<JobStats> {
        let mut inv = STATS.prepare_invoke();
        inv.key(&self.keys.ready)
            .key(&self.keys.delayed)
            .key(&self.keys.running)
            .key(&self.keys.done)
            .key(&self.keys.dead)
            .key(&self.keys.retrying)
            .arg(self.retained_since(wall_ms()));
        let (queued, retrying, running, done, dead): (u64, u64, u64, u64, u64) = self
            .redis
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(store_error)?;
        Ok(JobStats {
            queued,
            retrying,
            running,
            done,
            dead,
        })
    }
}

/// The PUT script's 13 values for `job`.
fn put_args(job: &Job) -> R<Vec<String>> {
    let payload = serde_json::to_string(&job.payload).map_err(|e| StoreError::Backend {
        message: format!("cannot encode job payload: {e}"),
    })?;
    let id = job.id.0.to_string();
    let run_at = micros(job.run_at);
    Ok(vec![
        id.clone(),
        job.dedupe_key.clone().unwrap_or_default(),
        flag(job.dedupe_key.is_some()).into(),
        member(run_at, &id),
        run_at.to_string(),
        payload,
        job.priority.to_string(),
        job.attempts.to_string(),
        job.max_attempts.to_string(),
        micros(job.created_at).to_string(),
        job.last_error.clone().unwrap_or_default(),
        flag(job.last_error.is_some()).into(),
        job.payload.kind().into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_sort_by_time_then_id() {
        let a = member(-5, "b");
        let b = member(0, "a");
        let c = member(1_900_000_000_000_000, "a");
        let d = member(1_900_000_000_000_000, "b");
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(time_prefix(i64::MIN), "00000000000000000000");
        assert_eq!(time_prefix(i64::MAX), u64::MAX.to_string());
        assert_eq!(&member(7, "x")[21..], "x");
    }
}

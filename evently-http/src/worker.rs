//! The background worker: runs due jobs (notification delivery, scheduled hold and offer expiry) and
//! expires holds that ran out, on a polling loop with graceful shutdown.
//!
//! Run it as the `evently-worker` binary, or inside your own process (next to the HTTP server, say):
//!
//! ```no_run
//! use std::time::Duration;
//! use evently_core::Evently;
//! use evently_http::worker::Worker;
//!
//! # async fn demo(engine: Evently) {
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let handle = Worker::new(engine)
//!     .poll_interval(Duration::from_millis(500))
//!     .spawn(async move {
//!         let _ = stopped.await;
//!     });
//! // ... later:
//! let _ = stop.send(());
//! handle.await.expect("worker task");
//! # }
//! ```
//!
//! Several workers (processes or tasks) may run against the same store: the job queue hands each due job
//! to one of them at a time (a lease), and every handler is idempotent, so a job run twice — after a
//! crash, or when a lease runs out — has the effect of once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evently_core::{Evently, JobRunSummary};

use crate::config::ConfigError;

/// Polling interval variable (milliseconds).
pub const ENV_WORKER_POLL_MS: &str = "EVENTLY_WORKER_POLL_MS";
/// Batch size variable.
pub const ENV_WORKER_BATCH: &str = "EVENTLY_WORKER_BATCH";
/// Job lease variable (seconds).
pub const ENV_WORKER_LEASE_SECS: &str = "EVENTLY_WORKER_LEASE_SECS";
/// Waitlist offer lifetime variable (seconds).
pub const ENV_OFFER_TTL_SECS: &str = "EVENTLY_OFFER_TTL_SECS";
/// Longest waitlist offer accepted, in seconds (a week).
const MAX_OFFER_TTL_SECS: u64 = 7 * 24 * 3600;

/// Default job lease: how long a claimed job is a worker's before another may take it (after a crash).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);

/// Default pause between polls of an empty queue.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of jobs claimed at a time.
pub const DEFAULT_BATCH: u32 = 100;
/// Largest batch accepted.
pub const MAX_BATCH: u32 = 10_000;
/// Batches run back to back in one pass before the worker checks the clock again (bounds a pass when
/// jobs keep arriving).
const MAX_BATCHES_PER_PASS: u32 = 100;

/// Worker settings from the environment.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `EVENTLY_WORKER_POLL_MS` | `1000` | pause between polls of an empty queue, 10 to 3,600,000 ms |
/// | `EVENTLY_WORKER_BATCH` | `100` | jobs claimed at a time, 1 to 10,000 |
/// | `EVENTLY_WORKER_LEASE_SECS` | `300` | job lease (visibility timeout): a job claimed by a worker that died is run again this long after the claim, 1 to 86,400 s; longer than the slowest job |
/// | `EVENTLY_OFFER_TTL_SECS` | `1800` | how long a waitlist offer stands before it passes to the next in line, 1 to 604,800 s (the engine's [`EngineConfig::offer_ttl`](evently_core::EngineConfig::offer_ttl)); the server and the worker should agree |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Pause between polls of an empty queue.
    pub poll_interval: Duration,
    /// Jobs claimed at a time.
    pub batch: u32,
    /// How long a claimed job is leased (the engine's [`EngineConfig::job_lease`](evently_core::EngineConfig::job_lease)).
    pub lease: Duration,
    /// How long a waitlist offer stands (the engine's [`EngineConfig::offer_ttl`](evently_core::EngineConfig::offer_ttl)).
    pub offer_ttl: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            batch: DEFAULT_BATCH,
            lease: DEFAULT_LEASE,
            offer_ttl: evently_core::EngineConfig::default().offer_ttl,
        }
    }
}

impl WorkerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars = crate::config::env_snapshot(&[
            ENV_WORKER_POLL_MS,
            ENV_WORKER_BATCH,
            ENV_WORKER_LEASE_SECS,
            ENV_OFFER_TTL_SECS,
        ])?;
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads the variables through `lookup` (`None` = unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(v) = lookup(ENV_WORKER_POLL_MS) {
            match v.trim().parse::<u64>() {
                Ok(ms @ 10..=3_600_000) => config.poll_interval = Duration::from_millis(ms),
                _ => {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_WORKER_POLL_MS,
                        value: v,
                        reason: "expected milliseconds from 10 to 3600000".into(),
                    });
                }
            }
        }
        if let Some(v) = lookup(ENV_WORKER_BATCH) {
            match v.trim().parse::<u32>() {
                Ok(n @ 1..=MAX_BATCH) => config.batch = n,
                _ => {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_WORKER_BATCH,
                        value: v,
                        reason: format!("expected a whole number from 1 to {MAX_BATCH}"),
                    });
                }
            }
        }
        if let Some(v) = lookup(ENV_WORKER_LEASE_SECS) {
            match v.trim().parse::<u64>() {
                Ok(secs @ 1..=86_400) => config.lease = Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_WORKER_LEASE_SECS,
                        value: v,
                        reason: "expected seconds from 1 to 86400".into(),
                    });
                }
            }
        }
        if let Some(v) = lookup(ENV_OFFER_TTL_SECS) {
            match v.trim().parse::<u64>() {
                Ok(secs @ 1..=MAX_OFFER_TTL_SECS) => config.offer_ttl = Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_OFFER_TTL_SECS,
                        value: v,
                        reason: format!("expected seconds from 1 to {MAX_OFFER_TTL_SECS}"),
                    });
                }
            }
        }
        Ok(config)
    }

    /// The engine settings with this lease and offer lifetime, the other fields at their defaults.
    pub fn engine_config(&self) -> evently_core::EngineConfig {
        evently_core::EngineConfig {
            job_lease: self.lease,
            offer_ttl: self.offer_ttl,
            ..Default::default()
        }
    }
}

/// What one [`Worker::run_once`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerPass {
    /// Holds (and waitlist offers) expired by the sweep.
    pub holds_expired: u32,
    /// Jobs handed over from the store's outbox to the engine's separate work queue (0 without one).
    pub relayed: u32,
    /// Jobs run, summed over the pass's batches.
    pub jobs: JobRunSummary,
    /// Steps that failed (each is logged); the next pass tries again.
    pub failures: u32,
}

impl WorkerPass {
    fn add(&mut self, s: JobRunSummary) {
        self.jobs.claimed += s.claimed;
        self.jobs.succeeded += s.succeeded;
        self.jobs.retried += s.retried;
        self.jobs.dead += s.dead;
    }
}

/// Runs due jobs until told to stop. Cheap to build; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Worker {
    engine: Evently,
    poll_interval: Duration,
    batch: u32,
    expire_holds: bool,
    /// Set when shutdown was asked for: a pass in progress ends after its current batch.
    stopping: Arc<AtomicBool>,
}

impl Worker {
    /// A worker over `engine` (whose notifiers deliver the notifications) with the default settings:
    /// poll every second, 100 jobs a batch, sweep expired holds each pass.
    pub fn new(engine: Evently) -> Self {
        Self {
            engine,
            poll_interval: DEFAULT_POLL_INTERVAL,
            batch: DEFAULT_BATCH,
            expire_holds: true,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Applies a [`WorkerConfig`].
    pub fn with_config(self, config: WorkerConfig) -> Self {
        self.poll_interval(config.poll_interval)
            .batch_size(config.batch)
    }

    /// Pause between polls when the queue has nothing due (at least 1 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// Jobs claimed at a time (clamped to 1..=[`MAX_BATCH`]).
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch = n.clamp(1, MAX_BATCH);
        self
    }

    /// Whether each pass also sweeps holds that ran out across all events (default true). Expiry jobs
    /// scheduled by the engine run either way.
    pub fn expire_holds(mut self, yes: bool) -> Self {
        self.expire_holds = yes;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Evently {
        &self.engine
    }

    /// One pass: sweeps expired holds (if enabled); when the engine has a separate work queue (Redis),
    /// hands the store's due jobs over to it ([`Evently::relay_jobs`]); then runs batches of due jobs
    /// until a batch comes back short (the queue is drained) or a bound on batches is hit. Errors are
    /// logged and counted.
    pub async fn run_once(&self) -> WorkerPass {
        let mut pass = WorkerPass::default();
        if self.expire_holds {
            match self.engine.expire_holds().await {
                Ok(n) => {
                    pass.holds_expired = n;
                    if n > 0 {
                        tracing::info!(expired = n, "expired holds");
                    }
                }
                Err(e) => {
                    pass.failures += 1;
                    tracing::error!(error = %e, "expiring holds failed");
                }
            }
        }
        for _ in 0..MAX_BATCHES_PER_PASS {
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            match self.engine.relay_jobs(self.batch).await {
                Ok(n) => {
                    pass.relayed += n;
                    if n < self.batch {
                        break;
                    }
                }
                Err(e) => {
                    pass.failures += 1;
                    tracing::error!(error = %e, "handing jobs over to the work queue failed");
                    break;
                }
            }
        }
        for _ in 0..MAX_BATCHES_PER_PASS {
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            match self.engine.run_jobs(self.batch).await {
                Ok(summary) => {
                    pass.add(summary);
                    if summary.claimed < self.batch {
                        break;
                    }
                }
                Err(e) => {
                    pass.failures += 1;
                    tracing::error!(error = %e, "running jobs failed");
                    break;
                }
            }
        }
        if pass.jobs.claimed > 0 {
            tracing::debug!(jobs = ?pass.jobs, "worker pass");
        }
        pass
    }

    /// Runs passes until `shutdown` completes: a pass, then a pause of the polling interval when the
    /// queue was drained (none when a pass stopped at its batch bound). When `shutdown` completes during
    /// a pass, the batch in progress is finished and no further batch starts, so no claimed job is
    /// abandoned mid-way and stopping takes at most one batch's time. Each pass runs in its own task, so a
    /// panicking notifier is logged and the loop goes on (its jobs are retried when their lease runs out).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        tracing::info!(
            poll_ms = u64::try_from(self.poll_interval.as_millis()).unwrap_or(u64::MAX),
            batch = self.batch,
            "worker started"
        );
        // This run's own flag, shared only with the passes it spawns (not with other clones).
        let this = Worker {
            stopping: Arc::new(AtomicBool::new(false)),
            ..self
        };
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = std::future::ready(()) => {}
            }
            let worker = this.clone();
            let mut pass_task = tokio::spawn(async move { worker.run_once().await });
            // Shutdown during a pass: the batch in progress finishes (its jobs complete or fail as
            // usual, none is abandoned mid-way), no further batch starts, then the loop ends.
            let (joined, stop) = tokio::select! {
                joined = &mut pass_task => (joined, false),
                () = &mut shutdown => {
                    tracing::info!("shutdown asked: finishing the jobs in flight");
                    this.stopping.store(true, Ordering::Relaxed);
                    (pass_task.await, true)
                }
            };
            let pass = match joined {
                Ok(pass) => pass,
                Err(e) => {
                    tracing::error!(error = %e, "worker pass aborted");
                    WorkerPass {
                        failures: 1,
                        ..Default::default()
                    }
                }
            };
            if stop {
                break;
            }
            let saturated = pass.failures == 0
                && pass.jobs.claimed >= this.batch.saturating_mul(MAX_BATCHES_PER_PASS);
            if !saturated {
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(this.poll_interval) => {}
                }
            }
        }
        tracing::info!("worker stopped");
    }

    /// Spawns [`Worker::run`] on the current Tokio runtime, e.g. inside the server process.
    pub fn spawn(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: a shutdown future for [`Worker::run`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<WorkerConfig, ConfigError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkerConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn config_defaults_and_values() {
        assert_eq!(from(&[]).unwrap(), WorkerConfig::default());
        let c = from(&[
            (ENV_WORKER_POLL_MS, "250"),
            (ENV_WORKER_BATCH, "7"),
            (ENV_WORKER_LEASE_SECS, "30"),
            (ENV_OFFER_TTL_SECS, "120"),
        ])
        .unwrap();
        assert_eq!(c.engine_config().offer_ttl, Duration::from_secs(120));
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.batch, 7);
        assert_eq!(c.engine_config().job_lease, Duration::from_secs(30));
        for (var, bad) in [
            (ENV_WORKER_POLL_MS, "0"),
            (ENV_WORKER_POLL_MS, "soon"),
            (ENV_WORKER_BATCH, "0"),
            (ENV_WORKER_BATCH, "10001"),
            (ENV_WORKER_LEASE_SECS, "0"),
            (ENV_WORKER_LEASE_SECS, "86401"),
            (ENV_OFFER_TTL_SECS, "0"),
            (ENV_OFFER_TTL_SECS, "604801"),
            (ENV_OFFER_TTL_SECS, "-5"),
        ] {
            assert!(
                matches!(from(&[(var, bad)]), Err(ConfigError::InvalidValue { var: v, .. }) if v == var),
                "{var}={bad}"
            );
        }
    }
}

//! Periodic housekeeping the server runs next to the API: expiring holds that ran out and running due
//! jobs (notification delivery, scheduled expiries).

use std::future::Future;
use std::time::Duration;

use evently_core::{Evently, JobRunSummary};
use tokio::time::MissedTickBehavior;

/// Jobs claimed per pass.
pub const JOBS_PER_PASS: u32 = 100;

/// What one [`maintenance_pass`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Holds (and waitlist offers) expired.
    pub holds_expired: u32,
    /// What the job runner did.
    pub jobs: JobRunSummary,
    /// Steps that failed (each is logged).
    pub failures: u32,
}

/// Expires due holds, then runs up to [`JOBS_PER_PASS`] due jobs. Errors are logged and counted, never
/// returned: the next pass tries again.
pub async fn maintenance_pass(engine: &Evently) -> MaintenanceReport {
    let mut report = MaintenanceReport::default();
    match engine.expire_holds().await {
        Ok(n) => {
            report.holds_expired = n;
            if n > 0 {
                tracing::info!(expired = n, "expired holds");
            }
        }
        Err(e) => {
            report.failures += 1;
            tracing::error!(error = %e, "expiring holds failed");
        }
    }
    match engine.run_jobs(JOBS_PER_PASS).await {
        Ok(summary) => {
            report.jobs = summary;
            if summary.claimed > 0 {
                tracing::debug!(?summary, "ran jobs");
            }
        }
        Err(e) => {
            report.failures += 1;
            tracing::error!(error = %e, "running jobs failed");
        }
    }
    report
}

/// Runs [`maintenance_pass`] every `every` until `shutdown` completes. Each pass runs in its own task, so
/// even a panicking pass is logged and the loop goes on.
pub async fn run_maintenance(engine: Evently, every: Duration, shutdown: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => {
                let engine = engine.clone();
                if let Err(e) = tokio::spawn(async move { maintenance_pass(&engine).await }).await {
                    tracing::error!(error = %e, "maintenance pass aborted");
                }
            }
        }
    }
    tracing::debug!("maintenance stopped");
}

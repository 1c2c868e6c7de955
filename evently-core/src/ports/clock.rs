use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Time, as the engine sees it. Tests use [`ManualClock`] to expire holds without sleeping.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Waits `d` (used for retry backoff).
    async fn sleep(&self, d: Duration);
}

/// Wall-clock time; sleeping uses a runtime-agnostic timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep(&self, d: Duration) {
        futures_timer::Delay::new(d).await
    }
}

/// A clock that moves only when told to. `sleep` advances it instead of waiting.
///
/// ```
/// use evently_core::{Clock, ManualClock};
/// use chrono::{Duration, TimeZone, Utc};
///
/// let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap());
/// clock.advance(Duration::minutes(15));
/// assert_eq!(clock.now(), Utc.with_ymd_and_hms(2030, 1, 1, 12, 15, 0).unwrap());
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Sets the time.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep(&self, d: Duration) {
        self.advance(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero()));
    }
}

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
        // `Utc::now()`, with the calendar date of the current day kept per thread: converting a day
        // number into a date is most of the cost of `Utc::now()`, and the engine reads the clock in
        // every transaction.
        use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
        thread_local! {
            static TODAY: std::cell::Cell<Option<(u64, NaiveDate)>> = const {
                std::cell::Cell::new(None)
            };
        }
        let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
        else {
            return Utc::now();
        };
        let secs = since_epoch.as_secs();
        let (day, second) = (secs / 86_400, secs % 86_400);
        let date = match TODAY.get() {
            Some((d, date)) if d == day => date,
            _ => {
                let Some(date) = NaiveDate::from_ymd_opt(1970, 1, 1)
                    .and_then(|epoch| epoch.checked_add_days(chrono::Days::new(day)))
                else {
                    return Utc::now();
                };
                TODAY.set(Some((day, date)));
                date
            }
        };
        // `second` < 86,400, so this always succeeds.
        match NaiveTime::from_num_seconds_from_midnight_opt(
            u32::try_from(second).unwrap_or(0),
            since_epoch.subsec_nanos(),
        ) {
            Some(time) => NaiveDateTime::new(date, time).and_utc(),
            None => Utc::now(),
        }
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

#[cfg(test)]
mod system_clock_tests {
    use super::*;

    #[test]
    fn system_clock_reads_what_chrono_reads() {
        for _ in 0..3 {
            let before = Utc::now();
            let now = SystemClock.now();
            let after = Utc::now();
            assert!(before <= now && now <= after, "{before} {now} {after}");
        }
    }
}

//! The memory store's lock: spins briefly, then waits asynchronously.
//!
//! A memory transaction holds the lock for a few microseconds of plain computation. A task that finds
//! it taken usually gets it by retrying, on its own core, without giving up its thread: no wake-up
//! through the scheduler, no parked thread to unpark. Only when the holder takes much longer (it awaits
//! something slow while holding the lock) does the task wait asynchronously, to be woken when the lock
//! is released.
//!
//! Not fair: a spinning task can take the lock before a woken one gets to it, which then waits again.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// How many times a task tries the lock before waiting asynchronously: about half a millisecond on
/// the 2-core benchmark machine (a booking transaction holds the lock for about 2 µs). Spinning that
/// long rides out a holder stretched by a page fault or a preempted virtual CPU, which on a VM takes
/// tens to hundreds of microseconds; giving up the thread sooner would park it, and waking a parked
/// thread costs more. The price: a task holding the lock across a slow await (a slow pricing plugin)
/// makes each waiting task spin that long before it waits.
const SPINS: u32 = 2000;

pub(super) struct SpinLock<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    /// Wakes tasks waiting for the lock; touched on release only when one waits.
    released: Released,
    /// The state starts a cache line (two, for adjacent-line prefetching) after the lock word, so a
    /// task spinning on the lock word does not take the holder's lines away from it.
    mutex: Mutex<Padded<T>>,
}

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

#[derive(Default)]
struct Released {
    notify: Notify,
    /// Tasks between deciding to wait and getting the lock.
    waiting: AtomicUsize,
}

impl<T> Clone for SpinLock<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                released: Released::default(),
                mutex: Mutex::new(Padded::default()),
            }),
        }
    }
}

/// Holds the lock; releases it (and wakes one waiting task) when dropped.
///
/// Invariant: while a `SpinGuard` exists, its lock is locked, by it.
pub(super) struct SpinGuard<T> {
    shared: Arc<Shared<T>>,
    /// Shared between threads only if `T` may be (the `Arc` alone would allow it for any `Send` `T`).
    _data: PhantomData<Box<T>>,
}

impl<T> SpinLock<T> {
    fn try_lock(&self) -> Option<SpinGuard<T>> {
        let guard = self.shared.mutex.try_lock()?;
        // Keep the lock locked past the borrow: the returned guard (which keeps the mutex alive
        // through its `Arc`) unlocks it when dropped.
        std::mem::forget(guard);
        Some(SpinGuard {
            shared: self.shared.clone(),
            _data: PhantomData,
        })
    }

    pub(super) async fn lock(&self) -> SpinGuard<T> {
        loop {
            for _ in 0..SPINS {
                if let Some(g) = self.try_lock() {
                    return g;
                }
                for _ in 0..8 {
                    std::hint::spin_loop();
                }
            }
            // Count ourselves as waiting and register for the next release before the last try,
            // so a release in between is not missed.
            let released = &self.shared.released;
            released.waiting.fetch_add(1, Ordering::SeqCst);
            let woken = released.notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(g) = self.try_lock() {
                released.waiting.fetch_sub(1, Ordering::SeqCst);
                return g;
            }
            woken.await;
            released.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl<T> std::ops::Deref for SpinGuard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock (see the type's invariant), so nothing else reaches the
        // data until it is dropped; the reference cannot outlive the guard.
        unsafe { &(*self.shared.mutex.data_ptr()).0 }
    }
}

impl<T> std::ops::DerefMut for SpinGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference through the guard.
        unsafe { &mut (*self.shared.mutex.data_ptr()).0 }
    }
}

impl<T> Drop for SpinGuard<T> {
    fn drop(&mut self) {
        // SAFETY: this guard locked the mutex (see the type's invariant) and no reference to the data
        // outlives it.
        unsafe { self.shared.mutex.force_unlock() };
        // Orders the release before the read of `waiting`: a task that counted itself as waiting
        // after this read tries the lock after the release, and gets it.
        fence(Ordering::SeqCst);
        let released = &self.shared.released;
        if released.waiting.load(Ordering::SeqCst) > 0 {
            // Stores a permit if the waiter has not begun to wait yet: it then returns at once.
            released.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tasks_take_turns_and_none_is_lost() {
        let lock = SpinLock::<(u64, bool)>::default();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let lock = lock.clone();
                tokio::spawn(async move {
                    for j in 0..200 {
                        let mut g = lock.lock().await;
                        assert!(!g.1, "two holders at once");
                        g.1 = true;
                        if (i + j) % 50 == 0 {
                            // Hold the lock across an await, as a transaction may: the others stop
                            // spinning and wait to be woken.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        g.0 += 1;
                        g.1 = false;
                    }
                })
            })
            .collect();
        let all = async {
            for t in tasks {
                t.await.expect("task");
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every task finishes");
        assert_eq!(lock.lock().await.0, 64 * 200);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_on_the_holders_own_thread_is_woken_when_the_holder_releases() {
        let lock = SpinLock::<u32>::default();
        let held = lock.lock().await;
        let waiter = tokio::spawn({
            let lock = lock.clone();
            async move {
                *lock.lock().await += 1;
            }
        });
        // The waiter spins, finds the lock still taken and waits; the holder runs again only
        // because the waiter yielded its thread.
        tokio::task::yield_now().await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is woken")
            .expect("waiter");
        assert_eq!(*lock.lock().await, 1);
    }
}

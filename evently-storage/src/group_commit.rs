//! Group commit for single-row queue operations: concurrent calls of one process are sent to the
//! server together (used by the Redis and PostgreSQL job queues for `enqueue` and `complete`, and by
//! Redis for `accept`).

use std::future::Future;

use evently_core::StoreError;
use tokio::sync::oneshot;

type R<T> = Result<T, StoreError>;

/// Group commit: concurrent calls of one kind (enqueues, completions) go to the server as one call
/// (a Redis script, an SQL statement).
/// A caller that finds no leader leads: it lets the others join (one yield), takes every waiting item,
/// steps down (the next caller leads the next batch, which is sent while this one is on the wire),
/// sends them (at most [`BATCH`] a call) and hands each caller its answer. A cancelled leader
/// drops its callers' answers; they then send their own item alone.
///
/// `A` is one item's answer (by default a number the caller interprets).
pub(crate) struct Batcher<T, A = i64> {
    state: std::sync::Mutex<BatchState<T, A>>,
}

struct BatchState<T, A> {
    waiting: Vec<(T, oneshot::Sender<R<A>>)>,
    leading: bool,
}

impl<T, A> Batcher<T, A> {
    pub(crate) fn new() -> Self {
        Self {
            state: std::sync::Mutex::new(BatchState {
                waiting: Vec::new(),
                leading: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BatchState<T, A>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `item`'s answer from a batch sent with `send`; `None` when the leader was cancelled first.
    pub(crate) async fn submit<F, Fut>(&self, item: T, send: F) -> Option<R<A>>
    where
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = R<Vec<A>>>,
    {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut g = self.lock();
            g.waiting.push((item, tx));
            !std::mem::replace(&mut g.leading, true)
        };
        if lead {
            self.lead(send).await;
        }
        rx.await.ok()
    }

    async fn lead<F, Fut>(&self, send: F)
    where
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = R<Vec<A>>>,
    {
        struct Cancelled<'a, T, A>(&'a Batcher<T, A>, bool);
        impl<T, A> Drop for Cancelled<'_, T, A> {
            fn drop(&mut self) {
                if self.1 {
                    let mut g = self.0.lock();
                    g.leading = false;
                    g.waiting.clear();
                }
            }
        }
        let mut guard = Cancelled(self, true);
        // Let the calls issued together (a worker's batch, other tasks) join this one.
        tokio::task::yield_now().await;
        let waiting = {
            let mut g = self.lock();
            g.leading = false;
            guard.1 = false;
            std::mem::take(&mut g.waiting)
        };
        // Calls that arrive from now on form the next batch, sent by their own leader while this one
        // is on the wire (the connection pipelines them).
        let mut waiting = waiting.into_iter();
        loop {
            let (items, answers): (Vec<T>, Vec<_>) = waiting.by_ref().take(BATCH).unzip();
            if items.is_empty() {
                return;
            }
            match send(items).await {
                Ok(found) => {
                    for (tx, f) in answers.into_iter().zip(found) {
                        let _ = tx.send(Ok(f));
                    }
                }
                Err(e) => {
                    for tx in answers {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// At most this many calls go in one call to the server.
pub(crate) const BATCH: usize = 256;

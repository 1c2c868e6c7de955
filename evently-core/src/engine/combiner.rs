//! Booking requests for the same event share transactions.
//!
//! Requests queue per event. With no transaction in flight for the event, the arriving request leads:
//! it takes up to `max_batch` queued requests (its own first) and runs them in one transaction. While it
//! runs, later requests queue. When it ends, leadership passes to the oldest queued request, whose task
//! wakes and runs the next batch. A batch that hits a store error is rolled back and its requests run
//! one by one, so one bad request never decides another's outcome.
//!
//! Cancellation: any of these futures may be dropped at any await point (a client that went away, a
//! timeout), and the queue must still move on.
//! - Leadership is handed on in a `Drop` guard ([`Leadership`]): a leader whose future is dropped
//!   mid-batch still passes the queue on; the requests of its unfinished batch see their reply channel
//!   close and run on their own.
//! - A waiting request is dropped with a guard on its reply channel ([`Waiting`]). If leadership was
//!   handed to it but its task never woke to take it, the guard passes leadership on to the next
//!   waiter; without it the event would stay "led" by nobody and every later request for it would
//!   wait forever.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_channel::oneshot;

use super::Evently;
use super::bookings::Pending;
use crate::model::Booking;
use crate::{EventId, Result};

enum Reply {
    Done(Result<Booking>),
    Lead,
}

struct Waiter {
    pending: Arc<Pending>,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Slot {
    queue: VecDeque<Waiter>,
    leading: bool,
}

/// Returns `Pending` once (waking itself at once), then `Ready`: lets the executor run other ready
/// tasks first, without depending on a runtime.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Per-event queues of booking requests.
#[derive(Default)]
pub(crate) struct Combiner {
    slots: Mutex<HashMap<EventId, Slot>>,
}

impl Combiner {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<EventId, Slot>) -> T) -> T {
        f(&mut self.slots.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Passes leadership of `event`'s queue to the oldest waiter whose task is still there (it keeps
    /// its own handle on its request and leads with it), skipping those that went away; with nobody
    /// left, the event is no longer led.
    fn hand_on(&self, event: EventId) {
        self.with(|slots| {
            let Some(slot) = slots.get_mut(&event) else {
                return;
            };
            while let Some(w) = slot.queue.pop_front() {
                if w.reply.send(Reply::Lead).is_ok() {
                    return;
                }
            }
            slots.remove(&event);
        });
    }
}

/// Passes leadership of an event's queue on when dropped.
struct Leadership<'a> {
    combiner: &'a Combiner,
    event: EventId,
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        self.combiner.hand_on(self.event);
    }
}

/// A queued request's reply channel. Dropped unanswered (the request's future was dropped while it
/// waited), it closes the channel; a `Lead` that arrived before the close was never taken, so it is
/// passed on as the leader itself would have.
struct Waiting<'a> {
    combiner: &'a Combiner,
    event: EventId,
    rx: oneshot::Receiver<Reply>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // After `close` no sender can deliver; whatever was delivered before is still readable.
        self.rx.close();
        if let Ok(Some(Reply::Lead)) = self.rx.try_recv() {
            self.combiner.hand_on(self.event);
        }
    }
}

impl Evently {
    /// Runs a booking request through its event's queue (see the module docs).
    pub(crate) async fn reserve_combined(&self, pending: Arc<Pending>) -> Result<Booking> {
        let combiner = &self.inner.combiner;
        let event = pending.req.event_id;
        let max = self.inner.config.max_batch as usize;
        loop {
            let (tx, rx) = oneshot::channel();
            let lead = combiner.with(|slots| {
                let slot = slots.entry(event).or_default();
                if slot.leading {
                    slot.queue.push_back(Waiter {
                        pending: pending.clone(),
                        reply: tx,
                    });
                    false
                } else {
                    slot.leading = true;
                    true
                }
            });
            if !lead {
                let mut waiting = Waiting {
                    combiner,
                    event,
                    rx,
                };
                match (&mut waiting.rx).await {
                    Ok(Reply::Done(result)) => return result,
                    // Our turn: leadership was handed to us (the slot stays `leading`).
                    Ok(Reply::Lead) => {}
                    // The leader went away (its caller dropped it) with our request in its batch. That
                    // batch was rolled back unless it got as far as committing: look for our booking by
                    // its pre-assigned id before queueing again.
                    Err(oneshot::Canceled) => {
                        if let Some(b) = self.committed(&pending).await? {
                            return Ok(b);
                        }
                        continue;
                    }
                }
            }
            let _leadership = Leadership { combiner, event };
            // Give requests that are already on their way (tasks woken by the previous batch's
            // answers) one turn of the scheduler to queue, so they ride in this transaction instead
            // of waiting for the next one.
            YieldNow(false).await;
            let others: Vec<Waiter> = combiner.with(|slots| {
                let slot = slots.entry(event).or_default();
                let n = slot.queue.len().min(max.saturating_sub(1));
                slot.queue.drain(..n).collect()
            });
            if others.is_empty() {
                return self.reserve_one(&pending).await;
            }
            let mut batch: Vec<&Pending> = Vec::with_capacity(others.len() + 1);
            batch.push(&pending);
            batch.extend(others.iter().map(|w| &*w.pending));
            metrics::histogram!("evently_booking_batch_size").record(batch.len() as f64);
            return match self.reserve_batch_tx(&batch).await {
                Ok(results) => {
                    let mut results = results.into_iter();
                    let mine = results.next().unwrap_or_else(|| {
                        Err(crate::Error::conflict(
                            "the booking request produced no outcome",
                        ))
                    });
                    for (w, r) in others.into_iter().zip(results) {
                        let _ = w.reply.send(Reply::Done(r));
                    }
                    mine
                }
                Err(e) => {
                    // Rolled back as a whole: run each request on its own, answering each at once.
                    tracing::debug!(error = %e, size = batch.len(), "batch failed; running its requests one by one");
                    let mine = self.reserve_one(&pending).await;
                    for w in others {
                        let r = self.reserve_one(&w.pending).await;
                        let _ = w.reply.send(Reply::Done(r));
                    }
                    mine
                }
            };
        }
    }

    /// The booking a request created, if a transaction carrying it committed.
    async fn committed(&self, pending: &Pending) -> Result<Option<Booking>> {
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.booking(pending.booking_id).await?)
    }
}

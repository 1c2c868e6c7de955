//! The bulk of a change set as ONE statement: the inserts of bookings, tickets, notifications and
//! jobs without a dedupe key, and the updates of events, bookings and waitlist entries that a
//! [`Changes`](evently_core::Changes) carries, gathered in a [`WriteBatch`].
//!
//! The statement is a chain of data-modifying CTEs, one per table and kind of write, each fed by
//! `UNNEST` over array parameters, so its shape depends only on which kinds are present and its plan
//! is prepared once per connection. The engine, booking a batch of requests under one event lock,
//! thus sends one round trip for all their writes instead of four or five per booking.
//!
//! Every row is written at most once per statement (a data-modifying CTE cannot see its siblings'
//! rows, and two changes to one row in one statement are undefined): repeated updates of a row keep
//! the last, and an update of a booking inserted in the same batch is folded into the insert.
//! Foreign keys between rows of one statement (a ticket of a booking inserted alongside) are checked
//! at its end, when every row is there.

use std::collections::HashMap;

use evently_core::{
    Booking, BookingId, Event, EventId, JobId, NewJob, Notification, StoreError, Ticket,
    WaitlistEntry, WaitlistEntryId,
};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Encode, Postgres, Type};

use super::codec::{NotificationFacts, bigint_u64, source_columns};

type R<T> = Result<T, StoreError>;

/// Writes waiting to be sent.
#[derive(Default)]
pub(crate) struct WriteBatch {
    bookings: Vec<Booking>,
    /// Index into `bookings` by id, for folding updates into pending inserts.
    booking_index: HashMap<BookingId, usize>,
    tickets: Vec<Ticket>,
    notifications: Vec<Notification>,
    jobs: Vec<(JobId, NewJob, String)>,
    events: HashMap<EventId, Event>,
    booking_updates: HashMap<BookingId, Booking>,
    waitlist_updates: HashMap<WaitlistEntryId, WaitlistEntry>,
}

/// The counts the flush statement must report back: rows each kind of update changed.
pub(crate) struct Expected {
    pub(crate) events: usize,
    pub(crate) bookings: usize,
    pub(crate) waitlist: usize,
}

impl WriteBatch {
    /// Rows waiting.
    pub(crate) fn len(&self) -> usize {
        self.bookings.len()
            + self.tickets.len()
            + self.notifications.len()
            + self.jobs.len()
            + self.events.len()
            + self.booking_updates.len()
            + self.waitlist_updates.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn insert_booking(&mut self, b: &Booking) {
        self.booking_index.insert(b.id, self.bookings.len());
        self.bookings.push(b.clone());
    }

    pub(crate) fn update_booking(&mut self, b: &Booking) {
        if let Some(&i) = self.booking_index.get(&b.id) {
            let pending = &mut self.bookings[i];
            pending.status = b.status;
            pending.held_until = b.held_until;
            pending.updated_at = b.updated_at;
        } else {
            self.booking_updates.insert(b.id, b.clone());
        }
    }

    pub(crate) fn insert_tickets(&mut self, tickets: &[Ticket]) {
        self.tickets.extend_from_slice(tickets);
    }

    pub(crate) fn insert_notification(&mut self, n: &Notification) {
        self.notifications.push(n.clone());
    }

    pub(crate) fn insert_job(&mut self, id: JobId, job: &NewJob, payload: String) {
        self.jobs.push((id, job.clone(), payload));
    }

    pub(crate) fn update_event(&mut self, e: &Event) {
        self.events.insert(e.id, e.clone());
    }

    pub(crate) fn update_waitlist_entry(&mut self, e: &WaitlistEntry) {
        self.waitlist_updates.insert(e.id, e.clone());
    }

    /// The one statement that writes everything, its parameters, and the update counts it must
    /// report.
    pub(crate) fn statement(self) -> R<(String, PgArguments, Expected)> {
        let mut s = Statement::default();
        if !self.bookings.is_empty() {
            let b = &self.bookings;
            let sources: Vec<_> = b.iter().map(|b| source_columns(&b.source)).collect();
            s.cte(
                "b",
                "INSERT INTO bookings (id, user_id, event_id, quantity, price_minor, currency, \
                 status, held_until, idempotency_key, source_kind, source_entry_id, created_at, \
                 updated_at) SELECT * FROM UNNEST(",
            );
            s.array("uuid", b.iter().map(|b| b.id.0).collect::<Vec<_>>())?;
            s.array("uuid", b.iter().map(|b| b.user_id.0).collect::<Vec<_>>())?;
            s.array("uuid", b.iter().map(|b| b.event_id.0).collect::<Vec<_>>())?;
            s.array(
                "int8",
                b.iter().map(|b| i64::from(b.quantity)).collect::<Vec<_>>(),
            )?;
            s.array(
                "int8",
                b.iter().map(|b| b.total_price.minor).collect::<Vec<_>>(),
            )?;
            s.array(
                "text",
                b.iter()
                    .map(|b| b.total_price.currency.as_str().to_string())
                    .collect::<Vec<_>>(),
            )?;
            s.array(
                "text",
                b.iter().map(|b| b.status.as_str()).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                b.iter().map(|b| b.held_until).collect::<Vec<_>>(),
            )?;
            s.array(
                "text",
                b.iter()
                    .map(|b| b.idempotency_key.clone())
                    .collect::<Vec<_>>(),
            )?;
            s.array("text", sources.iter().map(|(k, _)| *k).collect::<Vec<_>>())?;
            s.array("uuid", sources.iter().map(|(_, e)| *e).collect::<Vec<_>>())?;
            s.array(
                "timestamptz",
                b.iter().map(|b| b.created_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                b.iter().map(|b| b.updated_at).collect::<Vec<_>>(),
            )?;
            s.end_cte(")");
        }
        if !self.tickets.is_empty() {
            let t = &self.tickets;
            s.cte(
                "t",
                "INSERT INTO tickets (id, booking_id, event_id, number, qr_payload, issued_at) \
                 SELECT * FROM UNNEST(",
            );
            s.array("uuid", t.iter().map(|t| t.id.0).collect::<Vec<_>>())?;
            s.array("uuid", t.iter().map(|t| t.booking_id.0).collect::<Vec<_>>())?;
            s.array("uuid", t.iter().map(|t| t.event_id.0).collect::<Vec<_>>())?;
            s.array(
                "text",
                t.iter().map(|t| t.number.clone()).collect::<Vec<_>>(),
            )?;
            s.array(
                "text",
                t.iter().map(|t| t.qr_payload.clone()).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                t.iter().map(|t| t.issued_at).collect::<Vec<_>>(),
            )?;
            s.end_cte(")");
        }
        if !self.notifications.is_empty() {
            let n = &self.notifications;
            let data = n
                .iter()
                .map(|n| NotificationFacts::of(n).to_json())
                .collect::<R<Vec<_>>>()?;
            s.cte(
                "n",
                "INSERT INTO notifications (id, user_id, kind, data, created_at, sent_at, read_at) \
                 SELECT id, user_id, kind, data::jsonb, created_at, sent_at, read_at FROM UNNEST(",
            );
            s.array("uuid", n.iter().map(|n| n.id.0).collect::<Vec<_>>())?;
            s.array("uuid", n.iter().map(|n| n.user_id.0).collect::<Vec<_>>())?;
            s.array(
                "text",
                n.iter().map(|n| n.kind.as_str()).collect::<Vec<_>>(),
            )?;
            s.array("text", data)?;
            s.array(
                "timestamptz",
                n.iter().map(|n| n.created_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                n.iter().map(|n| n.sent_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                n.iter().map(|n| n.read_at).collect::<Vec<_>>(),
            )?;
            s.end_cte(") AS v(id, user_id, kind, data, created_at, sent_at, read_at)");
        }
        if !self.jobs.is_empty() {
            let j = &self.jobs;
            s.cte(
                "j",
                "INSERT INTO jobs (id, kind, payload, priority, status, run_at, attempts, \
                 max_attempts, dedupe_key, last_error, locked_until, created_at) \
                 SELECT id, kind, payload::jsonb, priority, 'queued', run_at, 0, max_attempts, \
                 NULL, NULL, NULL, run_at FROM UNNEST(",
            );
            s.array("uuid", j.iter().map(|(id, _, _)| id.0).collect::<Vec<_>>())?;
            s.array(
                "text",
                j.iter()
                    .map(|(_, job, _)| job.payload.kind())
                    .collect::<Vec<_>>(),
            )?;
            s.array(
                "text",
                j.iter().map(|(_, _, p)| p.clone()).collect::<Vec<_>>(),
            )?;
            s.array(
                "int2",
                j.iter().map(|(_, job, _)| job.priority).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                j.iter().map(|(_, job, _)| job.run_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "int8",
                j.iter()
                    .map(|(_, job, _)| i64::from(job.max_attempts))
                    .collect::<Vec<_>>(),
            )?;
            s.end_cte(") AS v(id, kind, payload, priority, run_at, max_attempts)");
        }
        let expected = Expected {
            events: self.events.len(),
            bookings: self.booking_updates.len(),
            waitlist: self.waitlist_updates.len(),
        };
        if !self.events.is_empty() {
            let e: Vec<&Event> = self.events.values().collect();
            s.cte(
                "ue",
                "UPDATE events SET name = v.name, description = v.description, venue = v.venue, \
                 category = v.category, starts_at = v.starts_at, ends_at = v.ends_at, \
                 capacity = v.capacity, price_minor = v.price_minor, currency = v.currency, \
                 active = v.active, version = v.version, seats_held = v.seats_held, \
                 seats_confirmed = v.seats_confirmed, updated_at = v.updated_at FROM UNNEST(",
            );
            s.array("uuid", e.iter().map(|e| e.id.0).collect::<Vec<_>>())?;
            s.array("text", e.iter().map(|e| e.name.clone()).collect::<Vec<_>>())?;
            s.array(
                "text",
                e.iter().map(|e| e.description.clone()).collect::<Vec<_>>(),
            )?;
            s.array(
                "text",
                e.iter().map(|e| e.venue.clone()).collect::<Vec<_>>(),
            )?;
            s.array(
                "text",
                e.iter().map(|e| e.category.clone()).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                e.iter().map(|e| e.starts_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                e.iter().map(|e| e.ends_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "int8",
                e.iter().map(|e| i64::from(e.capacity)).collect::<Vec<_>>(),
            )?;
            s.array("int8", e.iter().map(|e| e.price.minor).collect::<Vec<_>>())?;
            s.array(
                "text",
                e.iter()
                    .map(|e| e.price.currency.as_str().to_string())
                    .collect::<Vec<_>>(),
            )?;
            s.array("bool", e.iter().map(|e| e.active).collect::<Vec<_>>())?;
            s.array(
                "int8",
                e.iter()
                    .map(|e| bigint_u64("version", e.version))
                    .collect::<R<Vec<_>>>()?,
            )?;
            s.array(
                "int8",
                e.iter()
                    .map(|e| i64::from(e.seats_held))
                    .collect::<Vec<_>>(),
            )?;
            s.array(
                "int8",
                e.iter()
                    .map(|e| i64::from(e.seats_confirmed))
                    .collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                e.iter().map(|e| e.updated_at).collect::<Vec<_>>(),
            )?;
            s.end_cte(
                ") AS v(id, name, description, venue, category, starts_at, ends_at, capacity, \
                 price_minor, currency, active, version, seats_held, seats_confirmed, updated_at) \
                 WHERE events.id = v.id RETURNING 1",
            );
        }
        if !self.booking_updates.is_empty() {
            let b: Vec<&Booking> = self.booking_updates.values().collect();
            s.cte(
                "ub",
                "UPDATE bookings SET status = v.status, held_until = v.held_until, \
                 updated_at = v.updated_at FROM UNNEST(",
            );
            s.array("uuid", b.iter().map(|b| b.id.0).collect::<Vec<_>>())?;
            s.array(
                "text",
                b.iter().map(|b| b.status.as_str()).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                b.iter().map(|b| b.held_until).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                b.iter().map(|b| b.updated_at).collect::<Vec<_>>(),
            )?;
            s.end_cte(
                ") AS v(id, status, held_until, updated_at) WHERE bookings.id = v.id RETURNING 1",
            );
        }
        if !self.waitlist_updates.is_empty() {
            let w: Vec<&WaitlistEntry> = self.waitlist_updates.values().collect();
            s.cte(
                "uw",
                "UPDATE waitlist_entries SET status = v.status, notified_at = v.notified_at, \
                 offer_expires_at = v.offer_expires_at, offer_booking_id = v.offer_booking_id \
                 FROM UNNEST(",
            );
            s.array("uuid", w.iter().map(|w| w.id.0).collect::<Vec<_>>())?;
            s.array(
                "text",
                w.iter().map(|w| w.status.as_str()).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                w.iter().map(|w| w.notified_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "timestamptz",
                w.iter().map(|w| w.offer_expires_at).collect::<Vec<_>>(),
            )?;
            s.array(
                "uuid",
                w.iter()
                    .map(|w| w.offer_booking_id.map(|b| b.0))
                    .collect::<Vec<_>>(),
            )?;
            s.end_cte(
                ") AS v(id, status, notified_at, offer_expires_at, offer_booking_id) \
                 WHERE waitlist_entries.id = v.id RETURNING 1",
            );
        }
        let count = |cte: &str, present: bool| {
            if present {
                format!("(SELECT count(*) FROM {cte})")
            } else {
                "0::int8".to_string()
            }
        };
        s.sql.push_str(&format!(
            " SELECT {} AS events, {} AS bookings, {} AS waitlist",
            count("ue", expected.events > 0),
            count("ub", expected.bookings > 0),
            count("uw", expected.waitlist > 0),
        ));
        Ok((s.sql, s.args, expected))
    }
}

/// A statement under construction: SQL text and its numbered parameters.
#[derive(Default)]
struct Statement {
    sql: String,
    args: PgArguments,
    params: usize,
    /// Parameters of the CTE being built.
    in_cte: usize,
}

impl Statement {
    fn cte(&mut self, name: &str, head: &str) {
        self.sql
            .push_str(if self.sql.is_empty() { "WITH " } else { ", " });
        self.sql.push_str(name);
        self.sql.push_str(" AS (");
        self.sql.push_str(head);
        self.in_cte = 0;
    }

    fn end_cte(&mut self, tail: &str) {
        self.sql.push_str(tail);
        if !tail.contains("RETURNING") {
            self.sql.push_str(" RETURNING 1");
        }
        self.sql.push(')');
    }

    /// Appends `$n::<ty>[]` bound to `values`.
    fn array<T>(&mut self, ty: &str, values: T) -> R<()>
    where
        T: for<'q> Encode<'q, Postgres> + Type<Postgres> + Send,
    {
        self.args.add(values).map_err(|e| StoreError::Backend {
            message: format!("cannot encode a {ty}[] parameter: {e}"),
        })?;
        self.params += 1;
        if self.in_cte > 0 {
            self.sql.push_str(", ");
        }
        self.in_cte += 1;
        self.sql.push_str(&format!("${}::{ty}[]", self.params));
        Ok(())
    }
}

//! [`PgTx`]: one PostgreSQL transaction behind every repository of the storage port.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::{
    BookingRepository, Changes, EventRepository, NotificationQuery, NotificationRepository,
    PushSubscriptionRepository, TicketRepository, UserRepository, WaitlistRepository,
};
use evently_core::{
    Booking, BookingId, Event, EventFilter, EventId, JobId, LockMode, NewJob, Notification,
    NotificationId, PushSubscription, StoreError, Ticket, Transaction, User, UserId, WaitlistEntry,
    WaitlistEntryId, WaitlistStatus,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow, PgTransactionManager};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row, TransactionManager};
use uuid::Uuid;

use super::batch::WriteBatch;
use super::codec::{self, bigint_u64, json_map, json_payload};
use super::error::{Phase, classify, corrupt, is_connection_loss, timed_out};

type R<T> = Result<T, StoreError>;
pub(crate) type Q<'q> = Query<'q, Postgres, PgArguments>;

/// Whether a transaction may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `BEGIN` (READ COMMITTED): after `SELECT … FOR UPDATE` waits for a lock, each later statement
    /// sees what the transaction that held it committed.
    Write,
    /// `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`: one consistent snapshot for every statement,
    /// no locks, never a serialization failure.
    Read,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Write => "write",
            Access::Read => "read",
        }
    }

    fn begin_sql(self) -> &'static str {
        match self {
            Access::Write => "BEGIN",
            Access::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }
}

/// The failure after which PostgreSQL refuses every further statement of the transaction. Later
/// calls report it again, with its kind (a constraint violation stays one, so a caller that learns of
/// it only at commit can still tell what happened).
struct Aborted(StoreError);

impl Aborted {
    /// The error for the call that failed.
    fn again_first(&self) -> StoreError {
        self.0.clone()
    }

    /// The error for a later call.
    fn again(&self) -> StoreError {
        let earlier = |m: &str| format!("transaction aborted by an earlier error: {m}");
        match &self.0 {
            e @ (StoreError::UniqueViolation { .. }
            | StoreError::ForeignKeyViolation { .. }
            | StoreError::CheckViolation { .. }) => e.clone(),
            StoreError::Transient { message } => StoreError::Transient {
                message: earlier(message),
            },
            StoreError::Unavailable { message } => StoreError::Unavailable {
                message: earlier(message),
            },
            StoreError::Corrupt { message } => StoreError::Corrupt {
                message: earlier(message),
            },
            other => StoreError::Backend {
                message: earlier(&other.to_string()),
            },
        }
    }
}

/// One PostgreSQL transaction on a pooled connection. Dropping it without [`Transaction::commit`]
/// queues a `ROLLBACK`, which the pool sends before it hands the connection out again; a connection
/// whose state is unknown (lost, or a statement that did not answer in time) is closed instead.
pub(crate) struct PgTx {
    conn: PoolConnection<Postgres>,
    access: Access,
    started: Instant,
    /// Client-side bound on one round trip (the server's `statement_timeout` plus a margin).
    deadline: Duration,
    aborted: Option<Aborted>,
}

impl Drop for PgTx {
    fn drop(&mut self) {
        // Still inside the transaction (not committed or rolled back): queue the ROLLBACK.
        if PgTransactionManager::get_transaction_depth(&self.conn) > 0 {
            PgTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

/// Marks a pooled connection to be closed rather than pooled when it is dropped, unless the guard is
/// settled first (the connection is then known to be in a clean state).
struct CloseUnlessSettled<'a> {
    conn: &'a mut PoolConnection<Postgres>,
    settled: bool,
}

impl Drop for CloseUnlessSettled<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.close_on_drop();
        }
    }
}

impl PgTx {
    /// Starts a transaction on `conn`.
    pub(crate) async fn begin(
        mut conn: PoolConnection<Postgres>,
        access: Access,
        deadline: Duration,
    ) -> R<PgTx> {
        // Until the server has acknowledged the `BEGIN`, a drop of this future (the caller went away)
        // must not return the connection to the pool: the `BEGIN` may already be on the wire, and
        // sqlx queues no `ROLLBACK` for a transaction it has not counted yet, so the next user of the
        // connection would run inside this transaction (a read-only one refuses its writes; an
        // aborted one refuses everything). The guard closes the connection instead.
        let mut guard = CloseUnlessSettled {
            conn: &mut conn,
            settled: false,
        };
        let begun = tokio::time::timeout(
            deadline,
            PgTransactionManager::begin(&mut *guard.conn, Some(access.begin_sql().into())),
        )
        .await;
        match begun {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Whatever made `BEGIN` fail (a dead connection, or one left inside a transaction or
                // in an aborted one), the connection is not reused: the guard closes it. Retrying
                // takes another one.
                return Err(classify(e, Phase::Statement));
            }
            Err(_) => return Err(timed_out("BEGIN", Phase::Statement)),
        }
        guard.settled = true;
        drop(guard);
        tracing::trace!(
            backend = "postgres",
            access = access.as_str(),
            "transaction started"
        );
        Ok(PgTx {
            conn,
            access,
            started: Instant::now(),
            deadline,
            aborted: None,
        })
    }

    fn check_open(&self) -> R<()> {
        match &self.aborted {
            None => Ok(()),
            Some(a) => Err(a.again()),
        }
    }

    /// Classifies a failed statement. PostgreSQL aborts the whole transaction on any error, so every
    /// later statement is refused; a lost connection is also closed rather than pooled.
    fn fail(&mut self, err: sqlx::Error) -> StoreError {
        if is_connection_loss(&err) {
            self.conn.close_on_drop();
        }
        let classified = classify(err, Phase::Statement);
        let aborted = Aborted(classified);
        let e = aborted.again_first();
        self.aborted = Some(aborted);
        e
    }

    /// The answer did not come in time: the connection's state is unknown, so it is closed.
    fn stuck(&mut self, what: &str) -> StoreError {
        self.conn.close_on_drop();
        let aborted = Aborted(timed_out(what, Phase::Statement));
        let e = aborted.again_first();
        self.aborted = Some(aborted);
        e
    }

    /// Sends a change set's batched writes as one statement. A failure aborts the transaction.
    async fn send(&mut self, batch: WriteBatch) -> R<()> {
        self.check_open()?;
        if batch.is_empty() {
            return Ok(());
        }
        let rows = batch.len();
        let (sql, args, expected) = batch.statement()?;
        let q = sqlx::query_with(&sql, args);
        let row = match tokio::time::timeout(self.deadline, q.fetch_one(&mut *self.conn)).await {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => return Err(self.fail(e)),
            Err(_) => return Err(self.stuck("the batched writes")),
        };
        tracing::trace!(backend = "postgres", rows, "batched writes sent");
        for (col, want, what) in [
            ("events", expected.events, "event"),
            ("bookings", expected.bookings, "booking"),
            ("waitlist", expected.waitlist, "waitlist entry"),
        ] {
            let got: i64 = row
                .try_get(col)
                .map_err(|e| classify(e, Phase::Statement))?;
            if usize::try_from(got).ok() != Some(want) {
                // An update of a row that does not exist: the transaction must not commit.
                let aborted = Aborted(missing(what));
                let e = aborted.again_first();
                self.aborted = Some(aborted);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn exec(&mut self, q: Q<'_>) -> R<u64> {
        self.check_open()?;
        match tokio::time::timeout(self.deadline, q.execute(&mut *self.conn)).await {
            Ok(Ok(done)) => Ok(done.rows_affected()),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.stuck("a statement")),
        }
    }

    async fn one<T>(&mut self, q: Q<'_>, decode: fn(&PgRow) -> R<T>) -> R<Option<T>> {
        self.check_open()?;
        match tokio::time::timeout(self.deadline, q.fetch_optional(&mut *self.conn)).await {
            Ok(Ok(row)) => row.as_ref().map(decode).transpose(),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.stuck("a query")),
        }
    }

    async fn all<T>(&mut self, q: Q<'_>, decode: fn(&PgRow) -> R<T>) -> R<Vec<T>> {
        self.check_open()?;
        match tokio::time::timeout(self.deadline, q.fetch_all(&mut *self.conn)).await {
            Ok(Ok(rows)) => rows.iter().map(decode).collect(),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.stuck("a query")),
        }
    }

    async fn end(mut self, commit: bool) -> R<()> {
        let elapsed_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(a) = self.aborted.take() {
            // PostgreSQL already refuses the transaction; Drop queues the ROLLBACK.
            return if commit { Err(a.again()) } else { Ok(()) };
        }
        let (what, phase) = if commit {
            ("COMMIT", Phase::Commit)
        } else {
            ("ROLLBACK", Phase::Statement)
        };
        let result = if commit {
            tokio::time::timeout(self.deadline, PgTransactionManager::commit(&mut self.conn)).await
        } else {
            tokio::time::timeout(
                self.deadline,
                PgTransactionManager::rollback(&mut self.conn),
            )
            .await
        };
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                if is_connection_loss(&e) {
                    self.conn.close_on_drop();
                }
                Err(classify(e, phase))
            }
            Err(_) => {
                self.conn.close_on_drop();
                Err(timed_out(what, phase))
            }
        };
        tracing::debug!(
            backend = "postgres",
            access = self.access.as_str(),
            commit,
            ok = result.is_ok(),
            elapsed_us,
            "transaction ended"
        );
        result
    }
}

#[async_trait]
impl Transaction for PgTx {
    /// The rare writes (users, new events, waitlist entries, delivery records, push subscriptions,
    /// jobs with a dedupe key) one statement each; everything a booking writes (bookings, tickets,
    /// notifications, plain jobs, updated events, bookings and waitlist entries) in ONE statement
    /// (see `batch.rs`), so a batch of bookings under one event lock costs one round trip.
    async fn apply(&mut self, c: Changes) -> R<()> {
        for u in &c.new_users {
            self.insert_user(u).await?;
        }
        for u in &c.updated_users {
            self.update_user(u).await?;
        }
        for e in &c.new_events {
            self.insert_event(e).await?;
        }
        for e in &c.new_waitlist_entries {
            self.insert_waitlist_entry(e).await?;
        }
        let mut batch = WriteBatch::default();
        for e in &c.updated_events {
            codec::check_seats_within_capacity(e)?;
            bigint_u64("version", e.version)?;
            batch.update_event(e);
        }
        for b in &c.new_bookings {
            batch.insert_booking(b);
        }
        for b in &c.updated_bookings {
            batch.update_booking(b);
        }
        for e in &c.updated_waitlist_entries {
            batch.update_waitlist_entry(e);
        }
        batch.insert_tickets(&c.new_tickets);
        for n in &c.new_notifications {
            batch.insert_notification(n);
        }
        let mut deduped = Vec::new();
        for job in &c.new_jobs {
            if job.dedupe_key.is_some() {
                deduped.push(job);
                continue;
            }
            let payload = serde_json::to_string(&job.payload).map_err(|e| StoreError::Backend {
                message: format!("cannot encode job payload as JSON: {e}"),
            })?;
            batch.insert_job(JobId::new(), job, payload);
        }
        self.send(batch).await?;
        for (id, at) in &c.notifications_sent {
            self.mark_notification_sent(*id, *at).await?;
        }
        for (id, at) in &c.notifications_read {
            self.mark_notification_read(*id, *at).await?;
        }
        for d in &c.deliveries {
            self.record_notification_delivery(d.notification_id, &d.channel, d.at)
                .await?;
        }
        for sub in &c.push_subscriptions {
            self.upsert_push_subscription(sub).await?;
        }
        for endpoint in &c.removed_push_subscriptions {
            self.delete_push_subscription(endpoint).await?;
        }
        for job in deduped {
            self.enqueue_job(job).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> R<()> {
        (*self).end(true).await
    }

    async fn rollback(self: Box<Self>) -> R<()> {
        (*self).end(false).await
    }
}

fn missing(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("{what} does not exist"),
    }
}

#[async_trait]
impl UserRepository for PgTx {
    async fn user(&mut self, id: UserId) -> R<Option<User>> {
        let sql = format!("SELECT {} FROM users WHERE id = $1", codec::USER_COLUMNS);
        self.one(sqlx::query(&sql).bind(id.0), codec::user).await
    }

    async fn user_by_email(&mut self, email: &str) -> R<Option<User>> {
        let sql = format!("SELECT {} FROM users WHERE email = $1", codec::USER_COLUMNS);
        self.one(sqlx::query(&sql).bind(email), codec::user).await
    }

    async fn users(&mut self, ids: &[UserId]) -> R<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM users WHERE id = ANY($1)",
            codec::USER_COLUMNS
        );
        let list: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let found: HashMap<UserId, User> = self
            .all(sqlx::query(&sql).bind(list), codec::user)
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        // The order asked for, like the in-memory store.
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }
}

#[async_trait]
impl EventRepository for PgTx {
    async fn event(&mut self, id: EventId, lock: LockMode) -> R<Option<Event>> {
        tracing::trace!(backend = "postgres", event_id = %id, ?lock, access = self.access.as_str(), "read event");
        let sql = match lock {
            LockMode::None => format!("SELECT {} FROM events WHERE id = $1", codec::EVENT_COLUMNS),
            // The row lock is what serialises seat accounting across tasks and processes: held until
            // the transaction ends, and under READ COMMITTED the row returned after a wait is the one
            // the previous holder committed.
            LockMode::ForUpdate => format!(
                "SELECT {} FROM events WHERE id = $1 FOR UPDATE",
                codec::EVENT_COLUMNS
            ),
        };
        self.one(sqlx::query(&sql).bind(id.0), codec::event).await
    }

    async fn list_events(&mut self, filter: &EventFilter) -> R<Vec<Event>> {
        // Only the clauses the filter needs, so each of the few shapes gets its own plan and index.
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {} FROM events WHERE TRUE",
            codec::EVENT_COLUMNS
        ));
        if filter.active_only {
            qb.push(" AND active");
        }
        if let Some(c) = &filter.category {
            qb.push(" AND category = ").push_bind(c.clone());
        }
        if let Some(t) = filter.starts_after {
            qb.push(" AND starts_at >= ").push_bind(t);
        }
        if let Some(t) = filter.starts_before {
            qb.push(" AND starts_at < ").push_bind(t);
        }
        if let Some((at, id)) = filter.after {
            qb.push(" AND (starts_at, id) > (")
                .push_bind(at)
                .push(", ")
                .push_bind(id.0)
                .push(")");
        }
        if let Some(t) = &filter.text {
            // ASCII letters folded, nothing else (lower() would fold every script): the filter's rule.
            const FOLD: &str = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'";
            let t = t.to_ascii_lowercase();
            qb.push(format!(" AND (strpos(translate(name, {FOLD}), "))
                .push_bind(t.clone())
                .push(format!(") > 0 OR strpos(translate(venue, {FOLD}), "))
                .push_bind(t.clone())
                .push(format!(") > 0 OR strpos(translate(description, {FOLD}), "))
                .push_bind(t)
                .push(") > 0)");
        }
        qb.push(" ORDER BY starts_at, id LIMIT ")
            .push_bind(i64::from(filter.limit))
            .push(" OFFSET ")
            .push_bind(i64::from(filter.offset));
        self.all(qb.build(), codec::event).await
    }

    async fn events_with_expired_holds(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<EventId>> {
        let q = sqlx::query(
            "SELECT DISTINCT event_id FROM bookings \
             WHERE status = 'held' AND held_until <= $1 ORDER BY event_id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit));
        self.all(q, |row| {
            row.try_get::<Uuid, _>("event_id")
                .map(EventId)
                .map_err(|e| classify(e, Phase::Statement))
        })
        .await
    }
}

#[async_trait]
impl BookingRepository for PgTx {
    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE id = $1",
            codec::BOOKING_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(id.0), codec::booking).await
    }

    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE user_id = $1 AND idempotency_key = $2",
            codec::BOOKING_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(user.0).bind(key), codec::booking)
            .await
    }

    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
            codec::BOOKING_COLUMNS
        );
        self.all(sqlx::query(&sql).bind(user.0), codec::booking)
            .await
    }

    async fn bookings_for_event(&mut self, event: EventId) -> R<Vec<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE event_id = $1 ORDER BY created_at, id",
            codec::BOOKING_COLUMNS
        );
        self.all(sqlx::query(&sql).bind(event.0), codec::booking)
            .await
    }

    async fn expired_holds(
        &mut self,
        event: EventId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE event_id = $1 AND status = 'held' AND held_until <= $2 \
             ORDER BY held_until, id LIMIT $3",
            codec::BOOKING_COLUMNS
        );
        let q = sqlx::query(&sql)
            .bind(event.0)
            .bind(now)
            .bind(i64::from(limit));
        self.all(q, codec::booking).await
    }
}

#[async_trait]
impl WaitlistRepository for PgTx {
    async fn waitlist_entry(&mut self, id: WaitlistEntryId) -> R<Option<WaitlistEntry>> {
        let sql = format!(
            "SELECT {} FROM waitlist_entries WHERE id = $1",
            codec::WAITLIST_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(id.0), codec::waitlist_entry)
            .await
    }

    async fn live_waitlist_entry(
        &mut self,
        event: EventId,
        user: UserId,
    ) -> R<Option<WaitlistEntry>> {
        let sql = format!(
            "SELECT {} FROM waitlist_entries \
             WHERE event_id = $1 AND user_id = $2 AND status IN ('waiting', 'offered')",
            codec::WAITLIST_COLUMNS
        );
        self.one(
            sqlx::query(&sql).bind(event.0).bind(user.0),
            codec::waitlist_entry,
        )
        .await
    }

    async fn waitlist(
        &mut self,
        event: EventId,
        statuses: &[WaitlistStatus],
    ) -> R<Vec<WaitlistEntry>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM waitlist_entries WHERE event_id = $1 AND status = ANY($2) ORDER BY seq",
            codec::WAITLIST_COLUMNS
        );
        let list: Vec<&'static str> = statuses.iter().map(|s| s.as_str()).collect();
        self.all(
            sqlx::query(&sql).bind(event.0).bind(list),
            codec::waitlist_entry,
        )
        .await
    }
}

#[async_trait]
impl TicketRepository for PgTx {
    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>> {
        let sql = format!(
            "SELECT {} FROM tickets WHERE booking_id = $1 ORDER BY number",
            codec::TICKET_COLUMNS
        );
        self.all(sqlx::query(&sql).bind(booking.0), codec::ticket)
            .await
    }

    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>> {
        let sql = format!(
            "SELECT {} FROM tickets WHERE number = $1",
            codec::TICKET_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(number), codec::ticket)
            .await
    }
}

#[async_trait]
impl NotificationRepository for PgTx {
    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>> {
        let sql = format!(
            "SELECT {} FROM notifications WHERE id = $1",
            codec::NOTIFICATION_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(id.0), codec::notification)
            .await
    }

    async fn notifications_for_user(
        &mut self,
        user: UserId,
        query: &NotificationQuery,
    ) -> R<Vec<Notification>> {
        let sql = format!(
            "SELECT {} FROM notifications WHERE user_id = $1 AND ($2 OR read_at IS NULL) \
             AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
             ORDER BY created_at DESC, id DESC LIMIT $5",
            codec::NOTIFICATION_COLUMNS
        );
        let q = sqlx::query(&sql)
            .bind(user.0)
            .bind(!query.unread_only)
            .bind(query.before.map(|(at, _)| at))
            .bind(query.before.map(|(_, id)| id.0))
            .bind(i64::from(query.limit));
        self.all(q, codec::notification).await
    }

    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>> {
        let q = sqlx::query(
            "SELECT channel FROM notification_deliveries WHERE notification_id = $1 ORDER BY channel",
        )
        .bind(id.0);
        self.all(q, codec::delivery_channel).await
    }
}

#[async_trait]
impl PushSubscriptionRepository for PgTx {
    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>> {
        let sql = format!(
            "SELECT {} FROM push_subscriptions WHERE user_id = $1 ORDER BY created_at, endpoint",
            codec::PUSH_COLUMNS
        );
        self.all(sqlx::query(&sql).bind(user.0), codec::push_subscription)
            .await
    }
}

/// Decodes the `id` column of a row that failed to decode otherwise.
pub(crate) fn row_id(row: &PgRow) -> R<Uuid> {
    row.try_get::<Uuid, _>("id")
        .map_err(|e| corrupt(format!("row without a readable id: {e}")))
}

/// The insert of a new queued job with identifier `id` and the JSON of its payload. It inserts nothing
/// (zero rows affected) when a queued or running job already has the same dedupe key.
fn insert_job<'q>(job: &'q NewJob, id: JobId, payload: &'q serde_json::Value) -> Q<'q> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, priority, status, run_at, attempts, max_attempts, \
         dedupe_key, last_error, locked_until, created_at) \
         VALUES ($1, $2, $3, $4, 'queued', $5, 0, $6, $7, NULL, NULL, $5) \
         ON CONFLICT (dedupe_key) WHERE status IN ('queued', 'running') DO NOTHING",
    )
    .bind(id.0)
    .bind(job.payload.kind())
    .bind(Json(payload))
    .bind(job.priority)
    // Like the in-memory queue, a job counts as created when it is first due.
    .bind(job.run_at)
    .bind(i64::from(job.max_attempts))
    .bind(job.dedupe_key.as_deref())
}

/// The writes a change set is made of, one table at a time ([`Transaction::apply`] calls them in
/// the change set's order).
impl PgTx {
    pub(crate) async fn insert_user(&mut self, user: &User) -> R<()> {
        let q = sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, role, attributes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.0)
        .bind(user.email.as_str())
        .bind(user.name.as_str())
        .bind(user.password_hash.as_str())
        .bind(user.role.as_str())
        .bind(json_map(&user.attributes))
        .bind(user.created_at);
        self.exec(q).await.map(drop)
    }

    pub(crate) async fn update_user(&mut self, user: &User) -> R<()> {
        let q = sqlx::query(
            "UPDATE users SET name = $1, password_hash = $2, role = $3, attributes = $4 \
             WHERE id = $5",
        )
        .bind(user.name.as_str())
        .bind(user.password_hash.as_str())
        .bind(user.role.as_str())
        .bind(json_map(&user.attributes))
        .bind(user.id.0);
        match self.exec(q).await? {
            0 => Err(missing("user")),
            _ => Ok(()),
        }
    }

    pub(crate) async fn insert_event(&mut self, e: &Event) -> R<()> {
        let q = sqlx::query(
            "INSERT INTO events (id, name, description, venue, category, starts_at, ends_at, \
             capacity, price_minor, currency, active, version, seats_held, seats_confirmed, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(e.id.0)
        .bind(e.name.as_str())
        .bind(e.description.as_str())
        .bind(e.venue.as_str())
        .bind(e.category.as_str())
        .bind(e.starts_at)
        .bind(e.ends_at)
        .bind(i64::from(e.capacity))
        .bind(e.price.minor)
        .bind(e.price.currency.as_str().to_string())
        .bind(e.active)
        .bind(bigint_u64("version", e.version)?)
        .bind(i64::from(e.seats_held))
        .bind(i64::from(e.seats_confirmed))
        .bind(e.created_at)
        .bind(e.updated_at);
        self.exec(q).await.map(drop)
    }

    pub(crate) async fn insert_waitlist_entry(&mut self, e: &WaitlistEntry) -> R<i64> {
        let q = sqlx::query(
            "INSERT INTO waitlist_entries (id, event_id, user_id, quantity, status, joined_at, \
             notified_at, offer_expires_at, offer_booking_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
        )
        .bind(e.id.0)
        .bind(e.event_id.0)
        .bind(e.user_id.0)
        .bind(i64::from(e.quantity))
        .bind(e.status.as_str())
        .bind(e.joined_at)
        .bind(e.notified_at)
        .bind(e.offer_expires_at)
        .bind(e.offer_booking_id.map(|b| b.0));
        let seq = self
            .one(q, |row| {
                row.try_get::<i64, _>("seq")
                    .map_err(|e| classify(e, Phase::Statement))
            })
            .await?;
        seq.ok_or_else(|| StoreError::Backend {
            message: "INSERT … RETURNING seq returned no row".into(),
        })
    }

    pub(crate) async fn mark_notification_sent(
        &mut self,
        id: NotificationId,
        at: DateTime<Utc>,
    ) -> R<bool> {
        let q =
            sqlx::query("UPDATE notifications SET sent_at = $1 WHERE id = $2 AND sent_at IS NULL")
                .bind(at)
                .bind(id.0);
        Ok(self.exec(q).await? > 0)
    }

    pub(crate) async fn mark_notification_read(
        &mut self,
        id: NotificationId,
        at: DateTime<Utc>,
    ) -> R<()> {
        let q =
            sqlx::query("UPDATE notifications SET read_at = $1 WHERE id = $2 AND read_at IS NULL")
                .bind(at)
                .bind(id.0);
        self.exec(q).await.map(|_| ())
    }

    pub(crate) async fn record_notification_delivery(
        &mut self,
        id: NotificationId,
        channel: &str,
        at: DateTime<Utc>,
    ) -> R<bool> {
        let q = sqlx::query(
            "INSERT INTO notification_deliveries (notification_id, channel, delivered_at) \
             VALUES ($1, $2, $3) ON CONFLICT (notification_id, channel) DO NOTHING",
        )
        .bind(id.0)
        .bind(channel)
        .bind(at);
        Ok(self.exec(q).await? > 0)
    }

    pub(crate) async fn upsert_push_subscription(&mut self, sub: &PushSubscription) -> R<()> {
        let q = sqlx::query(
            "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (endpoint) DO UPDATE SET id = excluded.id, user_id = excluded.user_id, \
             p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at",
        )
        .bind(sub.id.0)
        .bind(sub.user_id.0)
        .bind(sub.endpoint.as_str())
        .bind(sub.p256dh.as_str())
        .bind(sub.auth.as_str())
        .bind(sub.created_at);
        self.exec(q).await.map(drop)
    }

    pub(crate) async fn delete_push_subscription(&mut self, endpoint: &str) -> R<bool> {
        let q = sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1").bind(endpoint);
        Ok(self.exec(q).await? > 0)
    }

    /// A job with a dedupe key (the others go in the batch statement).
    pub(crate) async fn enqueue_job(&mut self, job: &NewJob) -> R<Option<JobId>> {
        let id = JobId::new();
        let payload = json_payload(&job.payload)?;
        let inserted = self.exec(insert_job(job, id, &payload)).await?;
        Ok((inserted > 0).then_some(id))
    }
}

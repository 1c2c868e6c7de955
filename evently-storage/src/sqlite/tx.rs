//! [`SqliteTx`]: one SQLite transaction behind every repository of the storage port.

use std::collections::HashMap;
use std::time::Instant;

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
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnection, SqlitePool, SqliteRow, SqliteTransactionManager,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, TransactionManager};

use super::codec::{
    self, NotificationFacts, id_text, int_u64, json_map, json_payload, micros, opt_micros,
    source_columns,
};
use super::error::{classify, is_statement_level};

type R<T> = Result<T, StoreError>;
pub(crate) type Q<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// Most values bound in one statement by the `IN (...)` lists below (SQLite allows 32,766).
const MAX_IN_LIST: usize = 500;

/// Whether a transaction came from the writer or from a reader connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `BEGIN IMMEDIATE` on the single writer connection.
    Write,
    /// A deferred `BEGIN` on a reader connection (a consistent snapshot; writes are refused).
    Read,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// A failure after which SQLite may already have rolled the transaction back.
struct Aborted {
    transient: bool,
    message: String,
}

/// One SQLite transaction on a pooled connection. Dropping it without [`Transaction::commit`] rolls
/// it back: a `ROLLBACK` is queued on the connection, which runs before the connection is reused.
pub(crate) struct SqliteTx {
    conn: PoolConnection<Sqlite>,
    /// Not yet committed or rolled back by [`SqliteTx::end`].
    open: bool,
    access: Access,
    started: Instant,
    aborted: Option<Aborted>,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open {
            // Also when a COMMIT or ROLLBACK was under way: sqlx's connection worker then ignores
            // this one, as it does for its own transactions.
            SqliteTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

/// Starts a transaction on a connection of `pool`: with `statement`, or sqlx's plain `BEGIN` when
/// it is `None`.
///
/// sqlx-sqlite checks a custom `BEGIN` after running it; a drop of this future during that check
/// (its caller went away) would leave the connection inside a transaction nobody holds. Until the
/// `BEGIN` is known to have taken effect, a guard queues a `ROLLBACK` when dropped; the connection's
/// worker runs commands in order, so it follows the `BEGIN`, and does nothing if no transaction
/// began. (Closing the connection instead would lose a memory database, whose only connection it is.)
pub(crate) async fn begin(
    pool: &SqlitePool,
    statement: Option<&'static str>,
    access: Access,
) -> Result<SqliteTx, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut guard = RollBackUnlessSettled {
        conn: &mut conn,
        settled: false,
    };
    SqliteTransactionManager::begin(&mut *guard.conn, statement.map(Into::into)).await?;
    guard.settled = true;
    drop(guard);
    tracing::trace!(
        backend = "sqlite",
        access = access.as_str(),
        "transaction started"
    );
    Ok(SqliteTx {
        conn,
        open: true,
        access,
        started: Instant::now(),
        aborted: None,
    })
}

/// Queues a `ROLLBACK` on a connection when dropped, unless settled first.
struct RollBackUnlessSettled<'a> {
    conn: &'a mut PoolConnection<Sqlite>,
    settled: bool,
}

impl Drop for RollBackUnlessSettled<'_> {
    fn drop(&mut self) {
        if !self.settled {
            SqliteTransactionManager::start_rollback(self.conn);
        }
    }
}

impl SqliteTx {
    /// The connection, for statements of the store's own outside the repositories (the job queue's
    /// claim).
    pub(crate) fn raw(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// The connection, unless an earlier failure aborted the transaction. After such a failure SQLite
    /// may have rolled back on its own, and a further statement would run outside any transaction.
    fn conn(&mut self) -> R<&mut SqliteConnection> {
        if let Some(a) = &self.aborted {
            let message = format!("transaction aborted by an earlier error: {}", a.message);
            return Err(if a.transient {
                StoreError::Transient { message }
            } else {
                StoreError::Backend { message }
            });
        }
        Ok(&mut self.conn)
    }

    /// Classifies `err`; anything worse than a failed statement aborts the transaction.
    fn fail(&mut self, err: sqlx::Error) -> StoreError {
        let statement_level = is_statement_level(&err);
        let classified = classify(err);
        if !statement_level {
            self.aborted = Some(Aborted {
                transient: classified.is_transient(),
                message: classified.to_string(),
            });
        }
        classified
    }

    async fn exec(&mut self, q: Q<'_>) -> R<u64> {
        let conn = self.conn()?;
        match q.execute(&mut *conn).await {
            Ok(done) => Ok(done.rows_affected()),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn one<T>(&mut self, q: Q<'_>, decode: fn(&SqliteRow) -> R<T>) -> R<Option<T>> {
        let conn = self.conn()?;
        match q.fetch_optional(&mut *conn).await {
            Ok(row) => row.as_ref().map(decode).transpose(),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn all<T>(&mut self, q: Q<'_>, decode: fn(&SqliteRow) -> R<T>) -> R<Vec<T>> {
        let conn = self.conn()?;
        match q.fetch_all(&mut *conn).await {
            Ok(rows) => rows.iter().map(decode).collect(),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn exists(&mut self, sql: &'static str, id: String) -> R<bool> {
        Ok(self
            .one(sqlx::query(sql).bind(id), |_| Ok(()))
            .await?
            .is_some())
    }

    /// SQLite does not name the foreign key that failed: find the first parent that is missing.
    async fn name_foreign_key(
        &mut self,
        err: StoreError,
        parents: &[(&'static str, String, &'static str)],
    ) -> StoreError {
        if !matches!(err, StoreError::ForeignKeyViolation { .. }) {
            return err;
        }
        for (sql, id, name) in parents {
            match self.exists(sql, id.clone()).await {
                Ok(true) => {}
                Ok(false) => {
                    return StoreError::ForeignKeyViolation {
                        constraint: (*name).to_string(),
                    };
                }
                Err(e) => return e,
            }
        }
        err
    }

    pub(crate) async fn end(mut self, commit: bool) -> R<()> {
        let elapsed_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(a) = self.aborted.take() {
            // Whatever SQLite still holds is discarded; a failed ROLLBACK (nothing left to roll back)
            // makes the pool close the connection instead of reusing it.
            match SqliteTransactionManager::rollback(&mut self.conn).await {
                Ok(()) => self.open = false,
                Err(e) => {
                    tracing::debug!(backend = "sqlite", error = %e, "rollback after abort failed");
                }
            }
            if commit {
                let message = format!("transaction aborted by an earlier error: {}", a.message);
                return Err(if a.transient {
                    StoreError::Transient { message }
                } else {
                    StoreError::Backend { message }
                });
            }
            return Ok(());
        }
        let result = if commit {
            SqliteTransactionManager::commit(&mut self.conn).await
        } else {
            SqliteTransactionManager::rollback(&mut self.conn).await
        };
        if result.is_ok() {
            self.open = false;
        }
        tracing::debug!(
            backend = "sqlite",
            access = self.access.as_str(),
            commit,
            ok = result.is_ok(),
            elapsed_us,
            "transaction ended"
        );
        result.map_err(classify)
    }
}

#[async_trait]
impl Transaction for SqliteTx {
    /// One statement per record, each prepared once per connection (sqlx keeps them); SQLite runs
    /// in-process, so a statement costs no round trip. The change set runs inside a savepoint: when
    /// one of its statements fails, the ones before it are taken back too, so a failed change set
    /// leaves nothing behind and the transaction goes on as before it.
    async fn apply(&mut self, c: Changes) -> R<()> {
        self.exec(sqlx::query("SAVEPOINT apply")).await?;
        match self.apply_each(&c).await {
            Ok(()) => self.exec(sqlx::query("RELEASE apply")).await.map(drop),
            Err(e) => {
                if self.aborted.is_none() {
                    self.exec(sqlx::query("ROLLBACK TO apply")).await?;
                    self.exec(sqlx::query("RELEASE apply")).await?;
                }
                Err(e)
            }
        }
    }

    async fn commit(self: Box<Self>) -> R<()> {
        (*self).end(true).await
    }

    async fn rollback(self: Box<Self>) -> R<()> {
        (*self).end(false).await
    }
}

const USER_EXISTS: &str = "SELECT 1 FROM users WHERE id = ?";
const EVENT_EXISTS: &str = "SELECT 1 FROM events WHERE id = ?";
const BOOKING_EXISTS: &str = "SELECT 1 FROM bookings WHERE id = ?";
const NOTIFICATION_EXISTS: &str = "SELECT 1 FROM notifications WHERE id = ?";

fn missing(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("{what} does not exist"),
    }
}

#[async_trait]
impl UserRepository for SqliteTx {
    async fn user(&mut self, id: UserId) -> R<Option<User>> {
        let sql = format!("SELECT {} FROM users WHERE id = ?", codec::USER_COLUMNS);
        self.one(sqlx::query(&sql).bind(id_text(id.0)), codec::user)
            .await
    }

    async fn user_by_email(&mut self, email: &str) -> R<Option<User>> {
        let sql = format!("SELECT {} FROM users WHERE email = ?", codec::USER_COLUMNS);
        self.one(sqlx::query(&sql).bind(email.to_string()), codec::user)
            .await
    }

    async fn users(&mut self, ids: &[UserId]) -> R<Vec<User>> {
        let mut found: HashMap<UserId, User> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IN_LIST) {
            let mut qb = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {} FROM users WHERE id IN (",
                codec::USER_COLUMNS
            ));
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(id_text(id.0));
            }
            qb.push(")");
            for u in self.all(qb.build(), codec::user).await? {
                found.insert(u.id, u);
            }
        }
        // The order asked for, like the in-memory store.
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }
}

#[async_trait]
impl EventRepository for SqliteTx {
    async fn event(&mut self, id: EventId, lock: LockMode) -> R<Option<Event>> {
        // A write transaction began with BEGIN IMMEDIATE on the only writer connection: it already
        // excludes every other writer until it ends, which is what ForUpdate asks for.
        tracing::trace!(backend = "sqlite", event_id = %id, ?lock, access = self.access.as_str(), "read event");
        let sql = format!("SELECT {} FROM events WHERE id = ?", codec::EVENT_COLUMNS);
        self.one(sqlx::query(&sql).bind(id_text(id.0)), codec::event)
            .await
    }

    async fn list_events(&mut self, filter: &EventFilter) -> R<Vec<Event>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM events WHERE 1 = 1",
            codec::EVENT_COLUMNS
        ));
        if filter.active_only {
            qb.push(" AND active = 1");
        }
        if let Some(c) = &filter.category {
            qb.push(" AND category = ").push_bind(c.clone());
        }
        if let Some(t) = filter.starts_after {
            qb.push(" AND starts_at >= ").push_bind(micros(t));
        }
        if let Some(t) = filter.starts_before {
            qb.push(" AND starts_at < ").push_bind(micros(t));
        }
        if let Some((at, id)) = filter.after {
            qb.push(" AND (starts_at, id) > (")
                .push_bind(micros(at))
                .push(", ")
                .push_bind(id_text(id.0))
                .push(")");
        }
        if let Some(t) = &filter.text {
            // SQLite's lower() folds ASCII letters only: the filter's rule.
            let t = t.to_ascii_lowercase();
            qb.push(" AND (instr(lower(name), ")
                .push_bind(t.clone())
                .push(") > 0 OR instr(lower(venue), ")
                .push_bind(t.clone())
                .push(") > 0 OR instr(lower(description), ")
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
             WHERE status = 'held' AND held_until <= ? ORDER BY event_id LIMIT ?",
        )
        .bind(micros(now))
        .bind(i64::from(limit));
        self.all(q, |row| {
            let s: String = row.try_get("event_id").map_err(classify)?;
            uuid::Uuid::parse_str(&s)
                .map(EventId)
                .map_err(|e| super::error::corrupt(format!("event_id {s:?} is not a UUID: {e}")))
        })
        .await
    }
}

#[async_trait]
impl BookingRepository for SqliteTx {
    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE id = ?",
            codec::BOOKING_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(id_text(id.0)), codec::booking)
            .await
    }

    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE user_id = ? AND idempotency_key = ?",
            codec::BOOKING_COLUMNS
        );
        let q = sqlx::query(&sql)
            .bind(id_text(user.0))
            .bind(key.to_string());
        self.one(q, codec::booking).await
    }

    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE user_id = ? ORDER BY created_at DESC, id DESC",
            codec::BOOKING_COLUMNS
        );
        self.all(sqlx::query(&sql).bind(id_text(user.0)), codec::booking)
            .await
    }

    async fn bookings_for_event(&mut self, event: EventId) -> R<Vec<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE event_id = ? ORDER BY created_at, id",
            codec::BOOKING_COLUMNS
        );
        self.all(sqlx::query(&sql).bind(id_text(event.0)), codec::booking)
            .await
    }

    async fn expired_holds(
        &mut self,
        event: EventId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<Booking>> {
        let sql = format!(
            "SELECT {} FROM bookings WHERE event_id = ? AND status = 'held' AND held_until <= ? \
             ORDER BY held_until, id LIMIT ?",
            codec::BOOKING_COLUMNS
        );
        let q = sqlx::query(&sql)
            .bind(id_text(event.0))
            .bind(micros(now))
            .bind(i64::from(limit));
        self.all(q, codec::booking).await
    }
}

#[async_trait]
impl WaitlistRepository for SqliteTx {
    async fn waitlist_entry(&mut self, id: WaitlistEntryId) -> R<Option<WaitlistEntry>> {
        let sql = format!(
            "SELECT {} FROM waitlist_entries WHERE id = ?",
            codec::WAITLIST_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(id_text(id.0)), codec::waitlist_entry)
            .await
    }

    async fn live_waitlist_entry(
        &mut self,
        event: EventId,
        user: UserId,
    ) -> R<Option<WaitlistEntry>> {
        let sql = format!(
            "SELECT {} FROM waitlist_entries \
             WHERE event_id = ? AND user_id = ? AND status IN ('waiting', 'offered')",
            codec::WAITLIST_COLUMNS
        );
        let q = sqlx::query(&sql)
            .bind(id_text(event.0))
            .bind(id_text(user.0));
        self.one(q, codec::waitlist_entry).await
    }

    async fn waitlist(
        &mut self,
        event: EventId,
        statuses: &[WaitlistStatus],
    ) -> R<Vec<WaitlistEntry>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM waitlist_entries WHERE event_id = ",
            codec::WAITLIST_COLUMNS
        ));
        qb.push_bind(id_text(event.0)).push(" AND status IN (");
        let mut list = qb.separated(", ");
        for s in statuses {
            list.push_bind(s.as_str());
        }
        qb.push(") ORDER BY seq");
        self.all(qb.build(), codec::waitlist_entry).await
    }
}

#[async_trait]
impl TicketRepository for SqliteTx {
    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>> {
        let sql = format!(
            "SELECT {} FROM tickets WHERE booking_id = ? ORDER BY number",
            codec::TICKET_COLUMNS
        );
        self.all(sqlx::query(&sql).bind(id_text(booking.0)), codec::ticket)
            .await
    }

    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>> {
        let sql = format!(
            "SELECT {} FROM tickets WHERE number = ?",
            codec::TICKET_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(number.to_string()), codec::ticket)
            .await
    }
}

#[async_trait]
impl NotificationRepository for SqliteTx {
    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>> {
        let sql = format!(
            "SELECT {} FROM notifications WHERE id = ?",
            codec::NOTIFICATION_COLUMNS
        );
        self.one(sqlx::query(&sql).bind(id_text(id.0)), codec::notification)
            .await
    }

    async fn notifications_for_user(
        &mut self,
        user: UserId,
        query: &NotificationQuery,
    ) -> R<Vec<Notification>> {
        let sql = format!(
            "SELECT {} FROM notifications WHERE user_id = ? {} {} \
             ORDER BY created_at DESC, id DESC LIMIT ?",
            codec::NOTIFICATION_COLUMNS,
            if query.unread_only {
                "AND read_at IS NULL"
            } else {
                ""
            },
            if query.before.is_some() {
                "AND (created_at, id) < (?, ?)"
            } else {
                ""
            },
        );
        let mut q = sqlx::query(&sql).bind(id_text(user.0));
        if let Some((at, id)) = query.before {
            q = q.bind(micros(at)).bind(id_text(id.0));
        }
        self.all(q.bind(i64::from(query.limit)), codec::notification)
            .await
    }

    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>> {
        let q = sqlx::query(
            "SELECT channel FROM notification_deliveries WHERE notification_id = ? ORDER BY channel",
        )
        .bind(id_text(id.0));
        self.all(q, codec::delivery_channel).await
    }
}

#[async_trait]
impl PushSubscriptionRepository for SqliteTx {
    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>> {
        let sql = format!(
            "SELECT {} FROM push_subscriptions WHERE user_id = ? ORDER BY created_at, endpoint",
            codec::PUSH_COLUMNS
        );
        self.all(
            sqlx::query(&sql).bind(id_text(user.0)),
            codec::push_subscription,
        )
        .await
    }
}

/// The insert of a new queued job with identifier `id`. It inserts nothing (zero rows affected) when a
/// queued or running job already has the same dedupe key.
pub(crate) fn insert_job(job: &NewJob, id: JobId) -> R<Q<'static>> {
    Ok(sqlx::query(
        "INSERT INTO jobs (id, kind, payload, priority, status, run_at, attempts, max_attempts, \
         dedupe_key, last_error, locked_until, created_at) \
         VALUES (?, ?, ?, ?, 'queued', ?, 0, ?, ?, NULL, NULL, ?) \
         ON CONFLICT (dedupe_key) WHERE status IN ('queued', 'running') DO NOTHING",
    )
    .bind(id_text(id.0))
    .bind(job.payload.kind())
    .bind(json_payload(&job.payload)?)
    .bind(i64::from(job.priority))
    .bind(micros(job.run_at))
    .bind(i64::from(job.max_attempts))
    .bind(job.dedupe_key.clone())
    // Like the in-memory queue, a job counts as created when it is first due.
    .bind(micros(job.run_at)))
}

/// The writes a change set is made of, one table at a time ([`Transaction::apply`] calls them in
/// the change set's order).
impl SqliteTx {
    /// The statements of a change set, in its order.
    async fn apply_each(&mut self, c: &Changes) -> R<()> {
        for u in &c.new_users {
            self.insert_user(u).await?;
        }
        for u in &c.updated_users {
            self.update_user(u).await?;
        }
        for e in &c.new_events {
            self.insert_event(e).await?;
        }
        for e in &c.updated_events {
            self.update_event(e).await?;
        }
        for e in &c.new_waitlist_entries {
            self.insert_waitlist_entry(e).await?;
        }
        for b in &c.new_bookings {
            self.insert_booking(b).await?;
        }
        for b in &c.updated_bookings {
            self.update_booking(b).await?;
        }
        for e in &c.updated_waitlist_entries {
            self.update_waitlist_entry(e).await?;
        }
        self.insert_tickets(&c.new_tickets).await?;
        for n in &c.new_notifications {
            self.insert_notification(n).await?;
        }
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
        for job in &c.new_jobs {
            self.enqueue_job(job).await?;
        }
        Ok(())
    }

    pub(crate) async fn insert_user(&mut self, user: &User) -> R<()> {
        let q = sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, role, attributes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(user.id.0))
        .bind(user.email.clone())
        .bind(user.name.clone())
        .bind(user.password_hash.clone())
        .bind(user.role.as_str())
        .bind(json_map("attributes", &user.attributes)?)
        .bind(micros(user.created_at));
        self.exec(q).await.map(drop)
    }

    pub(crate) async fn update_user(&mut self, user: &User) -> R<()> {
        let q = sqlx::query(
            "UPDATE users SET name = ?, password_hash = ?, role = ?, attributes = ? WHERE id = ?",
        )
        .bind(user.name.clone())
        .bind(user.password_hash.clone())
        .bind(user.role.as_str())
        .bind(json_map("attributes", &user.attributes)?)
        .bind(id_text(user.id.0));
        match self.exec(q).await? {
            0 => Err(missing("user")),
            _ => Ok(()),
        }
    }

    pub(crate) async fn insert_event(&mut self, e: &Event) -> R<()> {
        let q = sqlx::query(
            "INSERT INTO events (id, name, description, venue, category, starts_at, ends_at, \
             capacity, price_minor, currency, active, version, seats_held, seats_confirmed, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(e.id.0))
        .bind(e.name.clone())
        .bind(e.description.clone())
        .bind(e.venue.clone())
        .bind(e.category.clone())
        .bind(micros(e.starts_at))
        .bind(micros(e.ends_at))
        .bind(i64::from(e.capacity))
        .bind(e.price.minor)
        .bind(e.price.currency.as_str().to_string())
        .bind(i64::from(e.active))
        .bind(int_u64("version", e.version)?)
        .bind(i64::from(e.seats_held))
        .bind(i64::from(e.seats_confirmed))
        .bind(micros(e.created_at))
        .bind(micros(e.updated_at));
        self.exec(q).await.map(drop)
    }

    pub(crate) async fn update_event(&mut self, e: &Event) -> R<()> {
        codec::check_seats_within_capacity(e)?;
        let q = sqlx::query(
            "UPDATE events SET name = ?, description = ?, venue = ?, category = ?, starts_at = ?, \
             ends_at = ?, capacity = ?, price_minor = ?, currency = ?, active = ?, version = ?, \
             seats_held = ?, seats_confirmed = ?, updated_at = ? WHERE id = ?",
        )
        .bind(e.name.clone())
        .bind(e.description.clone())
        .bind(e.venue.clone())
        .bind(e.category.clone())
        .bind(micros(e.starts_at))
        .bind(micros(e.ends_at))
        .bind(i64::from(e.capacity))
        .bind(e.price.minor)
        .bind(e.price.currency.as_str().to_string())
        .bind(i64::from(e.active))
        .bind(int_u64("version", e.version)?)
        .bind(i64::from(e.seats_held))
        .bind(i64::from(e.seats_confirmed))
        .bind(micros(e.updated_at))
        .bind(id_text(e.id.0));
        match self.exec(q).await? {
            0 => Err(missing("event")),
            _ => Ok(()),
        }
    }

    pub(crate) async fn insert_booking(&mut self, b: &Booking) -> R<()> {
        let (source_kind, source_entry) = source_columns(&b.source);
        let q = sqlx::query(
            "INSERT INTO bookings (id, user_id, event_id, quantity, price_minor, currency, status, \
             held_until, idempotency_key, source_kind, source_entry_id, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(b.id.0))
        .bind(id_text(b.user_id.0))
        .bind(id_text(b.event_id.0))
        .bind(i64::from(b.quantity))
        .bind(b.total_price.minor)
        .bind(b.total_price.currency.as_str().to_string())
        .bind(b.status.as_str())
        .bind(opt_micros(b.held_until))
        .bind(b.idempotency_key.clone())
        .bind(source_kind)
        .bind(source_entry)
        .bind(micros(b.created_at))
        .bind(micros(b.updated_at));
        match self.exec(q).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .name_foreign_key(
                    e,
                    &[
                        (USER_EXISTS, id_text(b.user_id.0), "bookings_user_id_fkey"),
                        (
                            EVENT_EXISTS,
                            id_text(b.event_id.0),
                            "bookings_event_id_fkey",
                        ),
                    ],
                )
                .await),
        }
    }

    pub(crate) async fn update_booking(&mut self, b: &Booking) -> R<()> {
        let q = sqlx::query(
            "UPDATE bookings SET status = ?, held_until = ?, updated_at = ? WHERE id = ?",
        )
        .bind(b.status.as_str())
        .bind(opt_micros(b.held_until))
        .bind(micros(b.updated_at))
        .bind(id_text(b.id.0));
        match self.exec(q).await? {
            0 => Err(missing("booking")),
            _ => Ok(()),
        }
    }

    pub(crate) async fn insert_waitlist_entry(&mut self, e: &WaitlistEntry) -> R<i64> {
        let q = sqlx::query(
            "INSERT INTO waitlist_entries (id, event_id, user_id, quantity, status, joined_at, \
             notified_at, offer_expires_at, offer_booking_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING seq",
        )
        .bind(id_text(e.id.0))
        .bind(id_text(e.event_id.0))
        .bind(id_text(e.user_id.0))
        .bind(i64::from(e.quantity))
        .bind(e.status.as_str())
        .bind(micros(e.joined_at))
        .bind(opt_micros(e.notified_at))
        .bind(opt_micros(e.offer_expires_at))
        .bind(e.offer_booking_id.map(|b| id_text(b.0)));
        let seq = self
            .one(q, |row| row.try_get::<i64, _>("seq").map_err(classify))
            .await;
        match seq {
            Ok(Some(seq)) => Ok(seq),
            Ok(None) => Err(StoreError::Backend {
                message: "INSERT ... RETURNING seq returned no row".into(),
            }),
            Err(err) => Err(self
                .name_foreign_key(
                    err,
                    &[
                        (
                            USER_EXISTS,
                            id_text(e.user_id.0),
                            "waitlist_entries_user_id_fkey",
                        ),
                        (
                            EVENT_EXISTS,
                            id_text(e.event_id.0),
                            "waitlist_entries_event_id_fkey",
                        ),
                    ],
                )
                .await),
        }
    }

    pub(crate) async fn update_waitlist_entry(&mut self, e: &WaitlistEntry) -> R<()> {
        let q = sqlx::query(
            "UPDATE waitlist_entries SET status = ?, notified_at = ?, offer_expires_at = ?, \
             offer_booking_id = ? WHERE id = ?",
        )
        .bind(e.status.as_str())
        .bind(opt_micros(e.notified_at))
        .bind(opt_micros(e.offer_expires_at))
        .bind(e.offer_booking_id.map(|b| id_text(b.0)))
        .bind(id_text(e.id.0));
        match self.exec(q).await? {
            0 => Err(missing("waitlist entry")),
            _ => Ok(()),
        }
    }

    pub(crate) async fn insert_tickets(&mut self, tickets: &[Ticket]) -> R<()> {
        if tickets.is_empty() {
            return Ok(());
        }
        // All or none: a savepoint undoes the tickets already inserted when a later one fails.
        let conn = self.conn()?;
        let inserted = async {
            let mut sp = conn.begin().await?;
            for t in tickets {
                sqlx::query(
                    "INSERT INTO tickets (id, booking_id, event_id, number, qr_payload, issued_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(id_text(t.id.0))
                .bind(id_text(t.booking_id.0))
                .bind(id_text(t.event_id.0))
                .bind(t.number.clone())
                .bind(t.qr_payload.clone())
                .bind(micros(t.issued_at))
                .execute(&mut *sp)
                .await?;
            }
            sp.commit().await
        }
        .await;
        match inserted {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = self.fail(e);
                let mut parents = Vec::new();
                for t in tickets {
                    parents.push((
                        BOOKING_EXISTS,
                        id_text(t.booking_id.0),
                        "tickets_booking_id_fkey",
                    ));
                }
                parents.dedup();
                Err(self.name_foreign_key(err, &parents).await)
            }
        }
    }

    pub(crate) async fn insert_notification(&mut self, n: &Notification) -> R<()> {
        let q = sqlx::query(
            "INSERT INTO notifications (id, user_id, kind, data, created_at, sent_at, read_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(n.id.0))
        .bind(id_text(n.user_id.0))
        .bind(n.kind.as_str())
        .bind(NotificationFacts::of(n).to_json()?)
        .bind(micros(n.created_at))
        .bind(opt_micros(n.sent_at))
        .bind(opt_micros(n.read_at));
        match self.exec(q).await {
            Ok(_) => Ok(()),
            Err(StoreError::ForeignKeyViolation { .. }) => Err(StoreError::ForeignKeyViolation {
                constraint: "notifications_user_id_fkey".into(),
            }),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn mark_notification_sent(
        &mut self,
        id: NotificationId,
        at: DateTime<Utc>,
    ) -> R<bool> {
        let q =
            sqlx::query("UPDATE notifications SET sent_at = ? WHERE id = ? AND sent_at IS NULL")
                .bind(micros(at))
                .bind(id_text(id.0));
        Ok(self.exec(q).await? > 0)
    }

    pub(crate) async fn mark_notification_read(
        &mut self,
        id: NotificationId,
        at: DateTime<Utc>,
    ) -> R<()> {
        let q =
            sqlx::query("UPDATE notifications SET read_at = ? WHERE id = ? AND read_at IS NULL")
                .bind(micros(at))
                .bind(id_text(id.0));
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
             VALUES (?, ?, ?) ON CONFLICT (notification_id, channel) DO NOTHING",
        )
        .bind(id_text(id.0))
        .bind(channel.to_owned())
        .bind(micros(at));
        match self.exec(q).await {
            Ok(n) => Ok(n > 0),
            Err(e) => Err(self
                .name_foreign_key(
                    e,
                    &[(
                        NOTIFICATION_EXISTS,
                        id_text(id.0),
                        "notification_deliveries_notification_id_fkey",
                    )],
                )
                .await),
        }
    }

    pub(crate) async fn upsert_push_subscription(&mut self, sub: &PushSubscription) -> R<()> {
        let q = sqlx::query(
            "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (endpoint) DO UPDATE SET id = excluded.id, user_id = excluded.user_id, \
             p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at",
        )
        .bind(id_text(sub.id.0))
        .bind(id_text(sub.user_id.0))
        .bind(sub.endpoint.clone())
        .bind(sub.p256dh.clone())
        .bind(sub.auth.clone())
        .bind(micros(sub.created_at));
        match self.exec(q).await {
            Ok(_) => Ok(()),
            Err(StoreError::ForeignKeyViolation { .. }) => Err(StoreError::ForeignKeyViolation {
                constraint: "push_subscriptions_user_id_fkey".into(),
            }),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete_push_subscription(&mut self, endpoint: &str) -> R<bool> {
        let q = sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = ?")
            .bind(endpoint.to_string());
        Ok(self.exec(q).await? > 0)
    }

    pub(crate) async fn enqueue_job(&mut self, job: &NewJob) -> R<Option<JobId>> {
        let id = JobId::new();
        let inserted = self.exec(insert_job(job, id)?).await?;
        Ok((inserted > 0).then_some(id))
    }
}

-- Evently on SQLite: the initial schema.
--
-- Conventions:
-- * Identifiers are UUIDs stored as lower-case hyphenated TEXT (they sort like the UUIDs' bytes).
-- * Timestamps are INTEGER microseconds since the Unix epoch (UTC), so they compare and sort as numbers.
-- * Money is an INTEGER amount of minor units plus a three-letter currency code.
-- * Maps (user attributes, notification data) and job payloads are JSON text.
-- * Tables are STRICT, so a value of the wrong type is refused instead of stored.
-- * Constraints are named like their PostgreSQL counterparts; the store reports those names.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CONSTRAINT users_role_check CHECK (role IN ('admin', 'user')),
    attributes    TEXT    NOT NULL DEFAULT '{}' CONSTRAINT users_attributes_json CHECK (json_valid(attributes)),
    created_at    INTEGER NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
) STRICT;

CREATE TABLE events (
    id              TEXT    NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    venue           TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER NOT NULL,
    capacity        INTEGER NOT NULL CONSTRAINT events_capacity_check CHECK (capacity >= 0),
    price_minor     INTEGER NOT NULL,
    currency        TEXT    NOT NULL CONSTRAINT events_currency_check CHECK (length(currency) = 3),
    active          INTEGER NOT NULL CONSTRAINT events_active_check CHECK (active IN (0, 1)),
    version         INTEGER NOT NULL CONSTRAINT events_version_check CHECK (version >= 0),
    seats_held      INTEGER NOT NULL CONSTRAINT events_seats_held_check CHECK (seats_held >= 0),
    seats_confirmed INTEGER NOT NULL CONSTRAINT events_seats_confirmed_check CHECK (seats_confirmed >= 0),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT events_seats_within_capacity CHECK (seats_held + seats_confirmed <= capacity)
) STRICT;

-- list_events: ordered by (starts_at, id), optionally by category or from a start time.
CREATE INDEX events_starts_at_idx ON events (starts_at, id);
CREATE INDEX events_category_starts_at_idx ON events (category, starts_at, id);

CREATE TABLE bookings (
    id              TEXT    NOT NULL PRIMARY KEY,
    user_id         TEXT    NOT NULL CONSTRAINT bookings_user_id_fkey REFERENCES users (id),
    event_id        TEXT    NOT NULL CONSTRAINT bookings_event_id_fkey REFERENCES events (id),
    quantity        INTEGER NOT NULL CONSTRAINT bookings_quantity_check CHECK (quantity > 0),
    price_minor     INTEGER NOT NULL,
    currency        TEXT    NOT NULL CONSTRAINT bookings_currency_check CHECK (length(currency) = 3),
    status          TEXT    NOT NULL CONSTRAINT bookings_status_check
                        CHECK (status IN ('held', 'confirmed', 'cancelled', 'expired')),
    held_until      INTEGER,
    idempotency_key TEXT,
    -- BookingSource: 'direct', or 'waitlist_offer' with the waitlist entry's id.
    source_kind     TEXT    NOT NULL CONSTRAINT bookings_source_check
                        CHECK ((source_kind = 'direct' AND source_entry_id IS NULL)
                            OR (source_kind = 'waitlist_offer' AND source_entry_id IS NOT NULL)),
    source_entry_id TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT bookings_user_idempotency_key UNIQUE (user_id, idempotency_key)
) STRICT;

-- bookings_for_user (newest first) and bookings_for_event (oldest first).
CREATE INDEX bookings_user_created_idx ON bookings (user_id, created_at, id);
CREATE INDEX bookings_event_created_idx ON bookings (event_id, created_at, id);
-- expired_holds and events_with_expired_holds: only live holds are indexed.
CREATE INDEX bookings_event_held_until_idx ON bookings (event_id, held_until, id) WHERE status = 'held';

CREATE TABLE waitlist_entries (
    -- The join sequence: AUTOINCREMENT never reuses a committed value, so it is strictly increasing.
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL CONSTRAINT waitlist_entries_id_key UNIQUE,
    event_id         TEXT    NOT NULL CONSTRAINT waitlist_entries_event_id_fkey REFERENCES events (id),
    user_id          TEXT    NOT NULL CONSTRAINT waitlist_entries_user_id_fkey REFERENCES users (id),
    quantity         INTEGER NOT NULL CONSTRAINT waitlist_entries_quantity_check CHECK (quantity > 0),
    status           TEXT    NOT NULL CONSTRAINT waitlist_entries_status_check
                         CHECK (status IN ('waiting', 'offered', 'accepted', 'expired', 'left')),
    joined_at        INTEGER NOT NULL,
    notified_at      INTEGER,
    offer_expires_at INTEGER,
    offer_booking_id TEXT
) STRICT;

-- At most one live (waiting or offered) entry per user and event.
CREATE UNIQUE INDEX waitlist_entries_one_live_per_user
    ON waitlist_entries (event_id, user_id) WHERE status IN ('waiting', 'offered');
-- An event's waitlist in join order.
CREATE INDEX waitlist_entries_event_seq_idx ON waitlist_entries (event_id, seq);

CREATE TABLE tickets (
    id         TEXT    NOT NULL PRIMARY KEY,
    booking_id TEXT    NOT NULL CONSTRAINT tickets_booking_id_fkey REFERENCES bookings (id),
    -- Denormalised from the booking for scanning at the door.
    event_id   TEXT    NOT NULL,
    number     TEXT    NOT NULL CONSTRAINT tickets_number_key UNIQUE,
    qr_payload TEXT    NOT NULL,
    issued_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX tickets_booking_number_idx ON tickets (booking_id, number);

CREATE TABLE notifications (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL CONSTRAINT notifications_user_id_fkey REFERENCES users (id),
    kind       TEXT    NOT NULL CONSTRAINT notifications_kind_check
                   CHECK (kind IN ('welcome', 'booking_confirmed', 'booking_cancelled', 'hold_expired',
                                   'waitlist_offer', 'waitlist_offer_expired')),
    title      TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    data       TEXT    NOT NULL DEFAULT '{}' CONSTRAINT notifications_data_json CHECK (json_valid(data)),
    created_at INTEGER NOT NULL,
    sent_at    INTEGER
) STRICT;

-- notifications_for_user: newest first.
CREATE INDEX notifications_user_created_idx ON notifications (user_id, created_at, id);

CREATE TABLE push_subscriptions (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL CONSTRAINT push_subscriptions_user_id_fkey REFERENCES users (id),
    endpoint   TEXT    NOT NULL CONSTRAINT push_subscriptions_endpoint_key UNIQUE,
    p256dh     TEXT    NOT NULL,
    auth       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (user_id, created_at, endpoint);

CREATE TABLE jobs (
    id           TEXT    NOT NULL PRIMARY KEY,
    -- JobPayload::kind(), for inspection; the payload itself is the JSON below.
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL CONSTRAINT jobs_payload_json CHECK (json_valid(payload)),
    priority     INTEGER NOT NULL CONSTRAINT jobs_priority_check CHECK (priority BETWEEN -32768 AND 32767),
    status       TEXT    NOT NULL CONSTRAINT jobs_status_check
                     CHECK (status IN ('queued', 'running', 'done', 'dead')),
    run_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0 CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 0),
    dedupe_key   TEXT,
    last_error   TEXT,
    locked_until INTEGER,
    created_at   INTEGER NOT NULL
) STRICT;

-- At most one queued or running job per dedupe key.
CREATE UNIQUE INDEX jobs_dedupe_key_live ON jobs (dedupe_key) WHERE status IN ('queued', 'running');
-- claim: due queued jobs by priority, then run_at; running jobs by lease end.
CREATE INDEX jobs_queued_idx ON jobs (priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_running_lease_idx ON jobs (locked_until) WHERE status = 'running';
-- stats: counts by status.
CREATE INDEX jobs_status_idx ON jobs (status);

-- Evently on PostgreSQL: the initial schema.
--
-- Conventions:
-- * Identifiers are native uuid, timestamps timestamptz (microsecond precision), counts and money bigint,
--   maps (user attributes, notification data) and job payloads jsonb, enumerations text with a CHECK.
-- * Every constraint is named, and the names are the ones the SQLite schema and the in-memory store
--   report, so a caller sees the same `StoreError` from every store.
-- * docs/storage.md explains each index by the query it serves.

CREATE TABLE users (
    id            uuid        NOT NULL CONSTRAINT users_pkey PRIMARY KEY,
    email         text        NOT NULL CONSTRAINT users_email_key UNIQUE,
    name          text        NOT NULL,
    password_hash text        NOT NULL,
    role          text        NOT NULL CONSTRAINT users_role_check CHECK (role IN ('admin', 'user')),
    attributes    jsonb       NOT NULL DEFAULT '{}'
                      CONSTRAINT users_attributes_json CHECK (jsonb_typeof(attributes) = 'object'),
    created_at    timestamptz NOT NULL
);

CREATE TABLE events (
    id              uuid        NOT NULL CONSTRAINT events_pkey PRIMARY KEY,
    name            text        NOT NULL,
    description     text        NOT NULL,
    venue           text        NOT NULL,
    category        text        NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    capacity        bigint      NOT NULL CONSTRAINT events_capacity_check CHECK (capacity >= 0),
    price_minor     bigint      NOT NULL,
    currency        text        NOT NULL CONSTRAINT events_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    active          boolean     NOT NULL,
    version         bigint      NOT NULL CONSTRAINT events_version_check CHECK (version >= 0),
    seats_held      bigint      NOT NULL CONSTRAINT events_seats_held_check CHECK (seats_held >= 0),
    seats_confirmed bigint      NOT NULL CONSTRAINT events_seats_confirmed_check CHECK (seats_confirmed >= 0),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- Never more seats held or sold than exist: the schema's last line of defence against overselling.
    CONSTRAINT events_seats_within_capacity CHECK (seats_held + seats_confirmed <= capacity)
);

-- list_events: ordered by (starts_at, id), optionally from a start time.
CREATE INDEX events_starts_at_idx ON events (starts_at, id);
-- list_events filtered by category.
CREATE INDEX events_category_starts_at_idx ON events (category, starts_at, id);

CREATE TABLE bookings (
    id              uuid        NOT NULL CONSTRAINT bookings_pkey PRIMARY KEY,
    user_id         uuid        NOT NULL CONSTRAINT bookings_user_id_fkey REFERENCES users (id),
    event_id        uuid        NOT NULL CONSTRAINT bookings_event_id_fkey REFERENCES events (id),
    quantity        bigint      NOT NULL CONSTRAINT bookings_quantity_check CHECK (quantity > 0),
    price_minor     bigint      NOT NULL,
    currency        text        NOT NULL CONSTRAINT bookings_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    status          text        NOT NULL CONSTRAINT bookings_status_check
                        CHECK (status IN ('held', 'confirmed', 'cancelled', 'expired')),
    held_until      timestamptz,
    idempotency_key text,
    -- BookingSource: 'direct', or 'waitlist_offer' with the waitlist entry's id.
    source_kind     text        NOT NULL CONSTRAINT bookings_source_check
                        CHECK ((source_kind = 'direct' AND source_entry_id IS NULL)
                            OR (source_kind = 'waitlist_offer' AND source_entry_id IS NOT NULL)),
    source_entry_id uuid,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- One booking per user and idempotency key (NULL keys are distinct, so keyless bookings are free).
    CONSTRAINT bookings_user_idempotency_key UNIQUE (user_id, idempotency_key)
);

-- bookings_for_user (newest first). Its leading user_id also serves the foreign key to users.
CREATE INDEX bookings_user_created_idx ON bookings (user_id, created_at, id);
-- bookings_for_event (oldest first). Its leading event_id also serves the foreign key to events.
CREATE INDEX bookings_event_created_idx ON bookings (event_id, created_at, id);
-- expired_holds and events_with_expired_holds: only live holds are indexed, so the index stays small
-- however many bookings an event has had.
CREATE INDEX bookings_event_held_until_idx ON bookings (event_id, held_until, id) WHERE status = 'held';

CREATE TABLE waitlist_entries (
    -- The join sequence, strictly increasing in the order entries are inserted.
    seq              bigint      GENERATED ALWAYS AS IDENTITY CONSTRAINT waitlist_entries_pkey PRIMARY KEY,
    id               uuid        NOT NULL CONSTRAINT waitlist_entries_id_key UNIQUE,
    event_id         uuid        NOT NULL CONSTRAINT waitlist_entries_event_id_fkey REFERENCES events (id),
    user_id          uuid        NOT NULL CONSTRAINT waitlist_entries_user_id_fkey REFERENCES users (id),
    quantity         bigint      NOT NULL CONSTRAINT waitlist_entries_quantity_check CHECK (quantity > 0),
    status           text        NOT NULL CONSTRAINT waitlist_entries_status_check
                         CHECK (status IN ('waiting', 'offered', 'accepted', 'expired', 'left')),
    joined_at        timestamptz NOT NULL,
    notified_at      timestamptz,
    offer_expires_at timestamptz,
    offer_booking_id uuid
);

-- At most one live (waiting or offered) entry per user and event; also serves live_waitlist_entry.
CREATE UNIQUE INDEX waitlist_entries_one_live_per_user
    ON waitlist_entries (event_id, user_id) WHERE status IN ('waiting', 'offered');
-- An event's waitlist in join order. Its leading event_id also serves the foreign key to events.
CREATE INDEX waitlist_entries_event_seq_idx ON waitlist_entries (event_id, seq);

CREATE TABLE tickets (
    id         uuid        NOT NULL CONSTRAINT tickets_pkey PRIMARY KEY,
    booking_id uuid        NOT NULL CONSTRAINT tickets_booking_id_fkey REFERENCES bookings (id),
    -- Denormalised from the booking for scanning at the door.
    event_id   uuid        NOT NULL,
    number     text        NOT NULL CONSTRAINT tickets_number_key UNIQUE,
    qr_payload text        NOT NULL,
    issued_at  timestamptz NOT NULL
);

-- tickets_for_booking, in number order. Its leading booking_id also serves the foreign key to bookings.
CREATE INDEX tickets_booking_number_idx ON tickets (booking_id, number);

CREATE TABLE notifications (
    id         uuid        NOT NULL CONSTRAINT notifications_pkey PRIMARY KEY,
    user_id    uuid        NOT NULL CONSTRAINT notifications_user_id_fkey REFERENCES users (id),
    kind       text        NOT NULL CONSTRAINT notifications_kind_check
                   CHECK (kind IN ('welcome', 'booking_confirmed', 'booking_cancelled', 'hold_expired',
                                   'waitlist_offer', 'waitlist_offer_expired')),
    title      text        NOT NULL,
    message    text        NOT NULL,
    data       jsonb       NOT NULL DEFAULT '{}'
                   CONSTRAINT notifications_data_json CHECK (jsonb_typeof(data) = 'object'),
    created_at timestamptz NOT NULL,
    sent_at    timestamptz
);

-- notifications_for_user: newest first. Its leading user_id also serves the foreign key to users.
CREATE INDEX notifications_user_created_idx ON notifications (user_id, created_at, id);

CREATE TABLE push_subscriptions (
    id         uuid        NOT NULL CONSTRAINT push_subscriptions_pkey PRIMARY KEY,
    user_id    uuid        NOT NULL CONSTRAINT push_subscriptions_user_id_fkey REFERENCES users (id),
    endpoint   text        NOT NULL CONSTRAINT push_subscriptions_endpoint_key UNIQUE,
    p256dh     text        NOT NULL,
    auth       text        NOT NULL,
    created_at timestamptz NOT NULL
);

-- push_subscriptions_for_user, in creation order.
CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (user_id, created_at, endpoint);

CREATE TABLE jobs (
    id           uuid        NOT NULL CONSTRAINT jobs_pkey PRIMARY KEY,
    -- JobPayload::kind(), for inspection; the payload itself is the JSON below.
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL CONSTRAINT jobs_payload_json CHECK (jsonb_typeof(payload) = 'object'),
    priority     smallint    NOT NULL,
    status       text        NOT NULL CONSTRAINT jobs_status_check
                     CHECK (status IN ('queued', 'running', 'done', 'dead')),
    run_at       timestamptz NOT NULL,
    attempts     bigint      NOT NULL DEFAULT 0 CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
    max_attempts bigint      NOT NULL CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 0),
    dedupe_key   text,
    last_error   text,
    locked_until timestamptz,
    created_at   timestamptz NOT NULL
);

-- At most one queued or running job per dedupe key (the ON CONFLICT target of enqueue).
CREATE UNIQUE INDEX jobs_dedupe_key_live ON jobs (dedupe_key) WHERE status IN ('queued', 'running');
-- claim: due queued jobs by priority, then run_at.
CREATE INDEX jobs_queued_idx ON jobs (priority DESC, run_at, id) WHERE status = 'queued';
-- claim: running jobs whose lease ran out.
CREATE INDEX jobs_running_lease_idx ON jobs (locked_until) WHERE status = 'running';
-- stats: counts by status.
CREATE INDEX jobs_status_idx ON jobs (status);

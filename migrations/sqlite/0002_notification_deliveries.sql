-- Which channels (notifier names: email, push, ...) have delivered each notification, so a delivery job
-- retried after one channel failed does not repeat the channels that already succeeded.
CREATE TABLE notification_deliveries (
    notification_id TEXT    NOT NULL
        CONSTRAINT notification_deliveries_notification_id_fkey REFERENCES notifications (id) ON DELETE CASCADE,
    channel         TEXT    NOT NULL CONSTRAINT notification_deliveries_channel_check
                        CHECK (length(channel) BETWEEN 1 AND 64),
    delivered_at    INTEGER NOT NULL,
    PRIMARY KEY (notification_id, channel)
) STRICT;

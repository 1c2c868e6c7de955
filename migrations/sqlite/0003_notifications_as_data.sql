-- Notifications are data: a kind and the facts it reports (event, booking, seats, total, offer
-- expiry, in `data`); the words are rendered where they are delivered. The stored texts go.
ALTER TABLE notifications DROP COLUMN title;
ALTER TABLE notifications DROP COLUMN message;

-- A notification's recipient can mark it read: the first time it was (NULL while unread).
ALTER TABLE notifications ADD COLUMN read_at timestamptz;

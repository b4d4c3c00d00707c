-- Where the bot follows an export (room, progress message, ...: JSON), so
-- that a restarted bot picks its progress message up again.
ALTER TABLE ferry_exports ADD COLUMN notify TEXT NOT NULL DEFAULT '';

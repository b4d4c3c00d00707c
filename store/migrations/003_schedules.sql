-- Schedules added at run time (from chat or the API); the ones in the
-- config file are not stored. Every instance loads these.
CREATE TABLE ferry_schedules (
    name        TEXT PRIMARY KEY,
    cron        TEXT NOT NULL,
    request     TEXT NOT NULL,           -- JSON: the export request each run makes
    keep        INTEGER NOT NULL DEFAULT 0,
    max_age_ms  BIGINT NOT NULL DEFAULT 0,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

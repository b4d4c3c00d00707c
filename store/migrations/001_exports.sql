-- Ferry's own state: one row per export (or import/verify) job, with the
-- lease that guards it and the checkpoint it resumes from.
CREATE TABLE ferry_exports (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,           -- export | import | verify
    status        TEXT NOT NULL,           -- queued | processing | completed | failed | cancelled
    requested_by  TEXT NOT NULL,           -- user ID, API token name or schedule
    via           TEXT NOT NULL,           -- room | api | cli | schedule
    request       TEXT NOT NULL,           -- JSON: filters, options, destination
    archive_id    TEXT NOT NULL DEFAULT '',
    name          TEXT NOT NULL DEFAULT '',
    archive_key   TEXT,                    -- key line of an unfinished encrypted export; cleared when it ends
    checkpoint    TEXT,                    -- base64 of the writer's last checkpoint
    progress      TEXT,                    -- JSON
    size          BIGINT NOT NULL DEFAULT 0,
    sha256        TEXT NOT NULL DEFAULT '',
    error         TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_token   BIGINT NOT NULL DEFAULT 0,
    lease_until   BIGINT NOT NULL DEFAULT 0,  -- unix ms
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ferry_exports_status ON ferry_exports (status, created_at);

-- The audit log: who asked for what, when, from where, and how it ended.
CREATE TABLE ferry_audit (
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    via      TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL DEFAULT '',
    outcome  TEXT NOT NULL DEFAULT '',
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ferry_audit_at ON ferry_audit (at);

-- One job state machine: River's job (river_job) is the only queue and run
-- state of a job. ferry_exports becomes ferry_jobs, the ledger of what each
-- job was asked and what it produced; its lease (lease_owner, lease_until:
-- the heartbeat that ResumeOrphans read) is gone, its fencing token stays
-- as fence. status becomes outcome: set once a job has ended (completed,
-- failed, cancelled, deleted), empty while River queues or runs it. The
-- bot's follow state moves to its own table.
CREATE TABLE ferry_jobs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,              -- export | import | verify
    requested_by  TEXT NOT NULL,              -- user ID, API token name or schedule
    via           TEXT NOT NULL,              -- room | api | cli | schedule | mydata | dashboard
    request       TEXT NOT NULL,              -- JSON: what the job was asked to do
    name          TEXT NOT NULL DEFAULT '',   -- the archive's name in storage
    location      TEXT NOT NULL DEFAULT '',   -- a CLI export's output (path or URL); '' for storage
    river_job_id  BIGINT NOT NULL DEFAULT 0,  -- the River job that runs it (0: not yet queued)
    fence         BIGINT NOT NULL DEFAULT 0,  -- fencing token: moved on by every claim and by the outcome
    attempts      INTEGER NOT NULL DEFAULT 0, -- runs that claimed it
    archive_id    TEXT NOT NULL DEFAULT '',
    archive_key   TEXT,                       -- sealed key line of an unfinished job; cleared when it ends
    checkpoint    TEXT,                       -- base64 of the writer's last checkpoint
    progress      TEXT,                       -- JSON, for display
    outcome       TEXT NOT NULL DEFAULT '',   -- '' | completed | failed | cancelled | deleted
    error         TEXT NOT NULL DEFAULT '',
    size          BIGINT NOT NULL DEFAULT 0,
    sha256        TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT NOT NULL DEFAULT 0
);
INSERT INTO ferry_jobs (id, kind, requested_by, via, request, name, river_job_id, fence, attempts, archive_id, archive_key,
    checkpoint, progress, outcome, error, size, sha256, created_at, updated_at, finished_at)
SELECT id, kind, requested_by, via, request, name, river_job_id, lease_token, attempts, archive_id, archive_key,
    checkpoint, progress,
    CASE WHEN status IN ('completed', 'failed', 'cancelled', 'deleted') THEN status ELSE '' END,
    error, size, sha256, created_at, updated_at, finished_at
FROM ferry_exports;
CREATE INDEX ferry_jobs_created ON ferry_jobs (created_at);
CREATE INDEX ferry_jobs_requested ON ferry_jobs (requested_by, created_at);
CREATE INDEX ferry_jobs_name ON ferry_jobs (name);

-- The bot's own state: where it follows a job (room, progress message,
-- ...: its JSON), so that a restarted bot picks its message up again.
CREATE TABLE ferry_bot_follows (
    job_id      TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO ferry_bot_follows (job_id, state, updated_at)
SELECT id, notify, updated_at FROM ferry_exports WHERE notify <> '';

DROP TABLE ferry_exports;

-- The web dashboard (/ui/): one-time login links and the sessions they
-- open, looked up by the SHA-256 of their token (the token itself is
-- never stored). Both expire; sessions survive a restart.
CREATE TABLE ferry_dashboard_logins (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,            -- admin | user
    expires_at  BIGINT NOT NULL
);
CREATE TABLE ferry_dashboard_sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX ferry_audit_actor ON ferry_audit (actor, at);
CREATE INDEX ferry_exports_requested ON ferry_exports (requested_by, created_at);

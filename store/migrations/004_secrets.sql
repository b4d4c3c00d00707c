-- Secrets revealed once through a link (the key of a personal export):
-- looked up by the SHA-256 of the link's token, deleted when revealed or
-- expired.
CREATE TABLE ferry_secrets (
    token_hash  TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

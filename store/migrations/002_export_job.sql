-- The River job currently working an export, so that any instance can
-- cancel it.
ALTER TABLE ferry_exports ADD COLUMN river_job_id BIGINT NOT NULL DEFAULT 0;

-- 004_m365.sql - Microsoft 365 jobs (src/m365/m365_job.c): one row per
-- run (sign-in, what was read, the plan, the check, the error) as JSON,
-- each step it ran with its result, and what undo needs: the objects moat
-- created in a tenant and the values it changed there. No secret (access
-- token, device code) is ever written here.
CREATE TABLE m365_job (
	id          TEXT PRIMARY KEY,
	tenant      TEXT NOT NULL,
	kind        TEXT NOT NULL,
	state       TEXT NOT NULL,
	created     INTEGER NOT NULL,
	updated     INTEGER NOT NULL,
	data        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX m365_job_created ON m365_job (created);

CREATE TABLE m365_step (
	job         TEXT NOT NULL REFERENCES m365_job (id) ON DELETE CASCADE,
	seq         INTEGER NOT NULL,
	at          INTEGER NOT NULL,
	data        TEXT NOT NULL,
	PRIMARY KEY (job, seq)
) WITHOUT ROWID;

CREATE TABLE m365_change (
	id          INTEGER PRIMARY KEY,
	tenant      TEXT NOT NULL COLLATE NOCASE,
	job         TEXT NOT NULL,
	at          INTEGER NOT NULL,
	undo        TEXT NOT NULL,
	undone      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX m365_change_tenant ON m365_change (tenant, undone, id);

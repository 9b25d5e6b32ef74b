-- 001_init.sql - moat's first SQLite schema: message tracking, quarantine
-- metadata, audit log, settings, rules, allow/block lists, admin users and
-- API tokens. Applied by store_sqlite.c inside one transaction, recorded
-- in schema_version. Times are milliseconds since the epoch (UTC); enums
-- are stored as their names so that the database reads without the code.
--
-- Searches are newest first and paged by the keyset (received, qid): every
-- searchable table has an index ending in (received, qid) behind its
-- equality column, so each filter walks one index in order and stops after
-- a page. Subject substrings go through FTS5 trigram indexes (3 octets or
-- more; shorter ones scan with the page limit).

-- --- message tracking ---------------------------------------------------

CREATE TABLE msg (
	rid         INTEGER PRIMARY KEY,          -- internal row id
	qid         TEXT NOT NULL UNIQUE,         -- queue id, 16 hex digits
	received    INTEGER NOT NULL,
	client_ip   TEXT NOT NULL,
	helo        TEXT NOT NULL,
	sender      TEXT NOT NULL COLLATE NOCASE, -- envelope sender, '' for <>
	sender_dom  TEXT NOT NULL COLLATE NOCASE, -- its domain, '' for <>
	subject     TEXT NOT NULL,
	hdr_from    TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	size        INTEGER NOT NULL,
	verdict     TEXT NOT NULL DEFAULT 'none', -- none until scanned
	score       REAL NOT NULL DEFAULT 0,
	symbols     TEXT NOT NULL DEFAULT '',
	reason      TEXT NOT NULL DEFAULT '',
	verdict_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX msg_time ON msg (received, qid);
CREATE INDEX msg_sender ON msg (sender, received, qid);
CREATE INDEX msg_sender_dom ON msg (sender_dom, received, qid);
CREATE INDEX msg_message_id ON msg (message_id);
CREATE INDEX msg_verdict ON msg (verdict, received, qid);

-- One row per recipient: its latest outcome (pending until delivery
-- reports one). received and qid are copied from msg for the keyset.
CREATE TABLE msg_rcpt (
	rid         INTEGER PRIMARY KEY,
	msg         INTEGER NOT NULL REFERENCES msg (rid) ON DELETE CASCADE,
	rcpt        TEXT NOT NULL COLLATE NOCASE,
	received    INTEGER NOT NULL,
	qid         TEXT NOT NULL,
	outcome     TEXT NOT NULL DEFAULT 'pending',
	reply       TEXT NOT NULL DEFAULT '',
	outcome_at  INTEGER NOT NULL DEFAULT 0,
	UNIQUE (msg, rcpt)
);
CREATE INDEX msg_rcpt_addr ON msg_rcpt (rcpt, received, qid);

-- The distinct recipient domains of a message (search by @domain).
CREATE TABLE msg_dom (
	dom         TEXT NOT NULL COLLATE NOCASE,
	received    INTEGER NOT NULL,
	qid         TEXT NOT NULL,
	msg         INTEGER NOT NULL REFERENCES msg (rid) ON DELETE CASCADE,
	PRIMARY KEY (dom, received, qid)
) WITHOUT ROWID;
CREATE INDEX msg_dom_msg ON msg_dom (msg);

-- Every delivery outcome in order: the timeline of a message.
CREATE TABLE msg_event (
	rid         INTEGER PRIMARY KEY,
	msg         INTEGER NOT NULL REFERENCES msg (rid) ON DELETE CASCADE,
	at          INTEGER NOT NULL,
	rcpt        TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	reply       TEXT NOT NULL
);
CREATE INDEX msg_event_msg ON msg_event (msg, at);

CREATE VIRTUAL TABLE msg_subject USING fts5 (subject, content = 'msg', content_rowid = 'rid',
	tokenize = 'trigram');
CREATE TRIGGER msg_subject_ins AFTER INSERT ON msg BEGIN
	INSERT INTO msg_subject (rowid, subject) VALUES (new.rid, new.subject);
END;
CREATE TRIGGER msg_subject_del AFTER DELETE ON msg BEGIN
	INSERT INTO msg_subject (msg_subject, rowid, subject) VALUES ('delete', old.rid, old.subject);
END;

-- --- quarantine ---------------------------------------------------------

CREATE TABLE quar (
	rid         INTEGER PRIMARY KEY,
	qid         TEXT NOT NULL UNIQUE,
	domain      TEXT NOT NULL COLLATE NOCASE,
	received    INTEGER NOT NULL,
	sender      TEXT NOT NULL COLLATE NOCASE,
	sender_dom  TEXT NOT NULL COLLATE NOCASE,
	hdr_from    TEXT NOT NULL,
	subject     TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	size        INTEGER NOT NULL,
	verdict     TEXT NOT NULL,
	score       REAL NOT NULL,
	symbols     TEXT NOT NULL,
	state       TEXT NOT NULL DEFAULT 'held',
	state_by    TEXT NOT NULL DEFAULT '',
	state_at    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX quar_time ON quar (received, qid);
CREATE INDEX quar_domain ON quar (domain, received, qid);
CREATE INDEX quar_sender ON quar (sender, received, qid);
CREATE INDEX quar_sender_dom ON quar (sender_dom, received, qid);
CREATE INDEX quar_message_id ON quar (message_id);
CREATE INDEX quar_verdict ON quar (verdict, received, qid);
CREATE INDEX quar_state ON quar (state, received, qid);

CREATE TABLE quar_rcpt (
	quar        INTEGER NOT NULL REFERENCES quar (rid) ON DELETE CASCADE,
	rcpt        TEXT NOT NULL COLLATE NOCASE,
	received    INTEGER NOT NULL,
	qid         TEXT NOT NULL,
	PRIMARY KEY (quar, rcpt)
) WITHOUT ROWID;
CREATE INDEX quar_rcpt_addr ON quar_rcpt (rcpt, received, qid);

CREATE TABLE quar_dom (
	dom         TEXT NOT NULL COLLATE NOCASE,
	received    INTEGER NOT NULL,
	qid         TEXT NOT NULL,
	quar        INTEGER NOT NULL REFERENCES quar (rid) ON DELETE CASCADE,
	PRIMARY KEY (dom, received, qid)
) WITHOUT ROWID;
CREATE INDEX quar_dom_quar ON quar_dom (quar);

CREATE VIRTUAL TABLE quar_subject USING fts5 (subject, content = 'quar', content_rowid = 'rid',
	tokenize = 'trigram');
CREATE TRIGGER quar_subject_ins AFTER INSERT ON quar BEGIN
	INSERT INTO quar_subject (rowid, subject) VALUES (new.rid, new.subject);
END;
CREATE TRIGGER quar_subject_del AFTER DELETE ON quar BEGIN
	INSERT INTO quar_subject (quar_subject, rowid, subject) VALUES ('delete', old.rid, old.subject);
END;

-- --- audit log, settings ------------------------------------------------

CREATE TABLE audit (
	rid         INTEGER PRIMARY KEY,
	at          INTEGER NOT NULL,
	who         TEXT NOT NULL,
	action      TEXT NOT NULL,
	target      TEXT NOT NULL,
	addr        TEXT NOT NULL
);
CREATE INDEX audit_target ON audit (target, rid);

CREATE TABLE setting (
	key         TEXT PRIMARY KEY,
	value       TEXT NOT NULL
) WITHOUT ROWID;

-- --- policy: rules, allow/block lists -----------------------------------

CREATE TABLE rule (
	rid         INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	priority    INTEGER NOT NULL UNIQUE,
	enabled     INTEGER NOT NULL,
	stop        INTEGER NOT NULL
);
-- kind: 'if', 'unless' or 'then'; pos orders the lines of one kind.
CREATE TABLE rule_line (
	rule        INTEGER NOT NULL REFERENCES rule (rid) ON DELETE CASCADE,
	kind        TEXT NOT NULL CHECK (kind IN ('if', 'unless', 'then')),
	pos         INTEGER NOT NULL,
	text        TEXT NOT NULL,
	PRIMARY KEY (rule, kind, pos)
) WITHOUT ROWID;

-- scope: '' for global, else a protected domain; kind 'allow' or 'block'.
CREATE TABLE list_entry (
	rid         INTEGER PRIMARY KEY,
	scope       TEXT NOT NULL COLLATE NOCASE,
	kind        TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
	pattern     TEXT NOT NULL COLLATE NOCASE,
	created     INTEGER NOT NULL,
	UNIQUE (scope, kind, pattern)
);

-- --- admin users and API tokens (hashes only) ---------------------------

CREATE TABLE admin_user (
	name        TEXT PRIMARY KEY,
	hash        TEXT NOT NULL,                -- argon2 encoded string
	created     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_token (
	id          TEXT PRIMARY KEY,
	hash        BLOB NOT NULL UNIQUE,         -- SHA-256 of the secret
	scopes      INTEGER NOT NULL,             -- STORE_SCOPE_* bits
	created     INTEGER NOT NULL,
	last_used   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

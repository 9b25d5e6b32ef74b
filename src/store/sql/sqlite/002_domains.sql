-- 002_domains.sql - protected domains added through the admin API. Each
-- keeps the text of its [domain] section ("key = value" lines), so the
-- config file's parser and checks build it (src/common/config.c) and the
-- API's errors read like the file's. Domains the config file declares
-- are not here: the file stays their source.
CREATE TABLE domain (
	name        TEXT PRIMARY KEY COLLATE NOCASE,
	body        TEXT NOT NULL,
	created     INTEGER NOT NULL,
	updated     INTEGER NOT NULL
) WITHOUT ROWID;

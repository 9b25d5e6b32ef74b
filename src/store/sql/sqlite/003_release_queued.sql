-- 003_release_queued.sql - a released entry records that its queue file
-- was written and synced: after a restart, a quarantine copy left behind
-- (a failed unlink, a crash before its directory was synced) is then
-- known to be delivered or on its way, and is not held again.
ALTER TABLE quar ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;

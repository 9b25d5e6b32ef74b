/*
 * spool_commit.c - making accepted messages durable: the commit threads.
 *
 * What costs is waiting for the disk, not the CPU: one file create, write
 * and fdatasync takes ~0.3 ms here and far more on real disks, while the
 * device can complete many such syncs at once (and a journalling file
 * system folds concurrent ones into one commit). So syncs are issued in
 * parallel and shared:
 *
 *   writers (spool_writers threads), one message at a time each:
 *       create incoming/<id>, write the rest of it, fdatasync, close,
 *       rename to queue/<id>
 *   directory syncer (one thread), everything renamed so far at once:
 *       fsync(queue/) once for the whole group, then hand the group to the
 *       loop thread, whose callbacks send the 250s.
 *
 * The busier the server, the more messages share each directory fsync and
 * the more file syncs are in flight together (group commit). A message is
 * acknowledged only after both of its syncs; if the directory fsync fails,
 * every message of that group is removed again and refused with a 4xx.
 */
#include "spool_internal.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static int
writev_all(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t n = writev(fd, iov, iovcnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static bool
spool_incoming_path(const struct spool *s, const char *id, char *buf, size_t size)
{
	return path_fmt(buf, size, "%s/%s", s->incoming, id);
}

/*
 * Write the rest of one message to incoming/, sync it, move it to queue/;
 * with commit false only write it (a batch syncs and renames together).
 */
static int
spool_commit_one(struct spool *s, struct spool_msg *m, bool commit)
{
	unsigned char hdr[SPOOL_MAGIC_LEN + SPOOL_REC_HDR];
	char from[4096], to[4096];
	size_t envlen;
	char *env = spool_env_serialise(m, &envlen);
	bool ours = m->fd >= 0; /* the incoming file is ours to remove on failure */
	int r = -1;

	memcpy(hdr, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
	spool_put_rec_hdr(hdr + SPOOL_MAGIC_LEN, SPOOL_R_BODY, (uint32_t)m->size);
	if (!spool_incoming_path(s, m->id, from, sizeof(from)) ||
	    !path_fmt(to, sizeof(to), "%s/%s", m->quarantine ? s->quarantine : s->queue, m->id))
		goto out;
	if (m->fd < 0) {
		struct iovec iov[3] = {{hdr, sizeof(hdr)},
		                       {m->body ? (void *)(uintptr_t)m->body : m->buf,
		                        m->body ? (size_t)m->size : m->len},
		                       {env, envlen}};

		m->fd = open(from, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (m->fd < 0)
			goto out;
		ours = true;
		if (writev_all(m->fd, iov, 3) < 0)
			goto out;
	} else {
		/* Spilled while it arrived: the tail, then the body length. */
		struct iovec iov[2] = {{m->buf, m->len}, {env, envlen}};

		if (writev_all(m->fd, iov, 2) < 0)
			goto out;
		errno = 0;
		if (pwrite(m->fd, hdr + SPOOL_MAGIC_LEN, SPOOL_REC_HDR, SPOOL_MAGIC_LEN) !=
		    SPOOL_REC_HDR) {
			if (errno == 0)
				errno = EIO;
			goto out;
		}
	}
	if (commit && fdatasync(m->fd) < 0)
		goto out;
	if (close(m->fd) < 0) {
		m->fd = -1;
		goto out;
	}
	m->fd = -1;
	/* RENAME_NOREPLACE: a queue id is never reused over a live file. */
	if (commit && renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) < 0)
		goto out;
	r = 0;
out:
	if (r < 0) {
		m->err = errno ? errno : EIO;
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
		if (ours)
			unlink(from);
	}
	free(env);
	return r;
}

/* A message that failed while it arrived (m->err): drop what it left in incoming/. */
static void
spool_commit_drop(struct spool *s, struct spool_msg *m)
{
	char path[4096];

	if (m->fd < 0)
		return;
	close(m->fd);
	m->fd = -1;
	if (spool_incoming_path(s, m->id, path, sizeof(path)))
		unlink(path);
}

static void *
spool_writer(void *arg)
{
	struct spool *s = arg;
	struct spool_msg *m;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (TAILQ_EMPTY(&s->pending) && !s->stopping)
			pthread_cond_wait(&s->cond_pending, &s->lock);
		if ((m = TAILQ_FIRST(&s->pending)) == NULL)
			break;
		TAILQ_REMOVE(&s->pending, m, entry);
		pthread_mutex_unlock(&s->lock);

		if (m->err == 0)
			spool_commit_one(s, m, true);
		else
			spool_commit_drop(s, m);

		pthread_mutex_lock(&s->lock);
		TAILQ_INSERT_TAIL(&s->renamed, m, entry);
		pthread_cond_signal(&s->cond_renamed);
	}
	s->writers_alive--;
	pthread_cond_signal(&s->cond_renamed);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* fsync queue/ (or quarantine/) once for the messages of group renamed into it. */
static void
spool_sync_group(struct spool *s, struct spool_msg_list *group, bool quarantine)
{
	int fd = quarantine ? s->quarantine_fd : s->queue_fd;
	struct spool_msg *m;
	bool any = false;
	int e;

	TAILQ_FOREACH (m, group, entry)
		any |= m->quarantine == quarantine && m->err == 0;
	if (!any || fsync(fd) == 0)
		return;
	e = errno;
	log_error("event=spool_commit error=fsync dir=%s reason=\"%s\"",
	          quarantine ? s->quarantine : s->queue, strerror(e));
	/* Durability unknown: refuse the whole group; the clients retry. */
	TAILQ_FOREACH (m, group, entry) {
		if (m->err || m->quarantine != quarantine)
			continue;
		m->err = e;
		unlinkat(fd, m->id, 0);
	}
}

static void *
spool_dirsyncer(void *arg)
{
	struct spool *s = arg;
	struct spool_msg_list group;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (TAILQ_EMPTY(&s->renamed) && s->writers_alive > 0)
			pthread_cond_wait(&s->cond_renamed, &s->lock);
		if (TAILQ_EMPTY(&s->renamed))
			break; /* stopping, and every writer is gone */
		TAILQ_INIT(&group);
		TAILQ_CONCAT(&group, &s->renamed, entry);
		pthread_mutex_unlock(&s->lock);

		spool_sync_group(s, &group, false);
		spool_sync_group(s, &group, true);

		pthread_mutex_lock(&s->lock);
		TAILQ_CONCAT(&s->done, &group, entry);
		event_active(s->done_ev, 0, 0);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Loop thread: hand finished commits back to their sessions. */
static void
spool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spool *s = arg;
	struct spool_msg_list done;
	struct spool_msg *m;

	TAILQ_INIT(&done);
	pthread_mutex_lock(&s->lock);
	TAILQ_CONCAT(&done, &s->done, entry);
	pthread_mutex_unlock(&s->lock);
	while ((m = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, m, entry);
		if (m->cb)
			m->cb(m->cb_arg, m, m->err);
		if (m->err == 0 && !m->quarantine && s->committed_fn)
			s->committed_fn(s->committed_arg, m->id);
		spool_msg_free(m);
	}
}

int
spool_start(struct spool *s, struct event_base *base, unsigned writers, spool_committed_fn fn,
            void *arg)
{
	s->committed_fn = fn;
	s->committed_arg = arg;
	if ((s->done_ev = event_new(base, -1, 0, spool_done_cb, s)) == NULL)
		return -1;
	if (writers < 1)
		writers = 1;
	if (writers > SPOOL_WRITERS_MAX)
		writers = SPOOL_WRITERS_MAX;
	s->running = true;
	for (s->nwriters = 0; s->nwriters < writers; s->nwriters++) {
		if (pthread_create(&s->writers[s->nwriters], NULL, spool_writer, s) != 0)
			break;
		s->writers_alive++;
	}
	if (s->nwriters == 0 || pthread_create(&s->dirsyncer, NULL, spool_dirsyncer, s) != 0)
		fatalx("cannot start the spool commit threads");
	return 0;
}

void
spool_stop(struct spool *s)
{
	if (!s->running)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->cond_pending);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->nwriters; i++)
		pthread_join(s->writers[i], NULL);
	pthread_join(s->dirsyncer, NULL);
	s->running = false;
	spool_done_cb(-1, 0, s);
	event_free(s->done_ev);
	s->done_ev = NULL;
}

void
spool_msg_commit(struct spool_msg *m, spool_commit_fn cb, void *arg)
{
	struct spool *s = m->spool;

	m->cb = cb;
	m->cb_arg = arg;
	pthread_mutex_lock(&s->lock);
	TAILQ_INSERT_TAIL(&s->pending, m, entry);
	pthread_cond_signal(&s->cond_pending);
	pthread_mutex_unlock(&s->lock);
}

int
spool_msg_commit_sync(struct spool_msg *m)
{
	struct spool *s = m->spool;
	int err = m->err;

	if (err == 0 && spool_commit_one(s, m, true) < 0)
		err = m->err ? m->err : EIO;
	if (err == 0 && fsync(m->quarantine ? s->quarantine_fd : s->queue_fd) < 0) {
		err = errno;
		unlinkat(m->quarantine ? s->quarantine_fd : s->queue_fd, m->id, 0);
	}
	if (err)
		spool_commit_drop(s, m);
	spool_msg_free(m);
	return err;
}

void
spool_msg_forget(struct spool_msg *m)
{
	m->cb = NULL;
	m->cb_arg = NULL;
}

/* --- releases from quarantine/ (spool.h) --- */

/* A queue file's message for one release: the held envelope, the chosen recipients. */
static struct spool_msg *
spool_release_msg(struct spool *s, const struct spool_release *r)
{
	const struct spool_env *qenv = r->env;
	struct spool_msg *m = xcalloc(1, sizeof(*m));
	struct spool_env *e = &m->env;

	/* the same id: tracking and the audit log follow the message */
	memcpy(m->id, qenv->id, sizeof(m->id));
	m->spool = s;
	m->fd = -1;
	m->body = r->body;
	m->size = r->len;
	m->crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), r->body, (uInt)r->len);
	memcpy(e->id, qenv->id, sizeof(e->id));
	/*
	 * Queued now: delivery counts its lifetime and delay warnings from
	 * here, not from an arrival up to quarantine_retention ago (which
	 * would expire it at once); tracking keeps the arrival.
	 */
	e->received_at = (int64_t)time(NULL);
	e->client_addr = qenv->client_addr ? xstrdup(qenv->client_addr) : NULL;
	e->helo = qenv->helo ? xstrdup(qenv->helo) : NULL;
	e->protocol = qenv->protocol ? xstrdup(qenv->protocol) : NULL;
	e->sender = xstrdup(qenv->sender ? qenv->sender : "");
	e->body_type = qenv->body_type ? xstrdup(qenv->body_type) : NULL;
	e->smtputf8 = qenv->smtputf8;
	e->ret = qenv->ret ? xstrdup(qenv->ret) : NULL;
	e->envid = qenv->envid ? xstrdup(qenv->envid) : NULL;
	e->head = xmalloc(r->head_len ? r->head_len : 1);
	memcpy(e->head, r->head, r->head_len);
	e->head_len = r->head_len;
	e->head_skip = r->head_skip;
	e->verdict = r->summary ? xstrdup(r->summary) : NULL;
	for (size_t i = 0; i < qenv->nrcpts; i++)
		if (r->keep == NULL || r->keep[i])
			spool_env_add_rcpt(e, qenv->rcpts[i].addr, qenv->rcpts[i].notify,
			                   qenv->rcpts[i].orcpt);
	return m;
}

/*
 * The commit protocol for many files at once: every incoming file written,
 * one syncfs() for all their data, the renames, one fsync of queue/; then
 * the quarantine copies unlinked and one fsync of quarantine/. Per file
 * that is what spool_commit_one() does, without a sync each.
 */
int
spool_quarantine_release(struct spool *s, struct spool_release *r, size_t n)
{
	struct spool_msg **m = xcalloc(n ? n : 1, sizeof(*m));
	size_t queued = 0;
	int synced = 0;

	for (size_t i = 0; i < n; i++) {
		r[i].err = 0;
		m[i] = spool_release_msg(s, &r[i]);
		if (spool_commit_one(s, m[i], false) < 0)
			r[i].err = m[i]->err ? m[i]->err : EIO;
	}
	if (syncfs(s->queue_fd) < 0)
		synced = errno;
	for (size_t i = 0; i < n; i++) {
		char from[4096], to[4096];

		if (r[i].err)
			continue;
		if (synced)
			r[i].err = synced;
		else if (!spool_incoming_path(s, m[i]->id, from, sizeof(from)) ||
		         !path_fmt(to, sizeof(to), "%s/%s", s->queue, m[i]->id) ||
		         renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) < 0)
			r[i].err = errno ? errno : EIO;
		else
			queued++;
		if (r[i].err && spool_incoming_path(s, m[i]->id, from, sizeof(from)))
			unlink(from);
	}
	if (queued > 0 && fsync(s->queue_fd) < 0) {
		int e = errno;

		/* durability unknown: none of them is queued */
		for (size_t i = 0; i < n; i++)
			if (r[i].err == 0) {
				r[i].err = e;
				unlinkat(s->queue_fd, m[i]->id, 0);
			}
		queued = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (r[i].err == 0 && unlinkat(s->quarantine_fd, m[i]->id, 0) < 0 && errno != ENOENT)
			log_warn("event=quarantine_release id=%s warning=\"queued, but "
			         "quarantine/%s "
			         "stays until the next start: %s\"",
			         m[i]->id, m[i]->id, strerror(errno));
		spool_msg_free(m[i]);
	}
	if (queued > 0 && fsync(s->quarantine_fd) < 0)
		log_warn("event=quarantine_release warning=\"fsync quarantine/: %s; the next start "
		         "removes what stays\"",
		         strerror(errno));
	free(m);
	return queued == n ? 0 : -1;
}

/*
 * spool_commit.c - the committer thread: group commit of queue files.
 *
 * The loop thread queues finished messages; the committer takes everything
 * pending as one batch, writes and fdatasync()s each file (on ext4 and XFS
 * the first sync commits the journal for the whole batch, the others find
 * their data already stable), renames them into queue/ and fsync()s the
 * queue directory once for the batch. Then the batch goes back to the loop
 * thread, whose callbacks send the 250s. While the committer works on one
 * batch, the next one gathers: the busier the server, the larger the
 * batches and the fewer syncs per message.
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
#include <unistd.h>

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

/* Write the rest of one message to its incoming file (not yet synced). */
static int
spool_commit_write(struct spool *s, struct spool_msg *m)
{
	unsigned char hdr[SPOOL_MAGIC_LEN + SPOOL_REC_HDR];
	size_t envlen;
	char *env = spool_env_serialise(m, &envlen);
	int r = -1;

	memcpy(hdr, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
	spool_put_rec_hdr(hdr + SPOOL_MAGIC_LEN, SPOOL_R_BODY, (uint32_t)m->size);
	if (m->fd < 0) {
		char path[4096];
		struct iovec iov[3] = {
			{hdr, sizeof(hdr)},
			{m->buf, m->len},
			{env, envlen},
		};

		snprintf(path, sizeof(path), "%s/%s", s->incoming, m->id);
		m->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (m->fd < 0 || writev_all(m->fd, iov, 3) < 0)
			goto out;
	} else {
		struct iovec iov[2] = {{m->buf, m->len}, {env, envlen}};

		if (writev_all(m->fd, iov, 2) < 0)
			goto out;
		if (pwrite(m->fd, hdr + SPOOL_MAGIC_LEN, SPOOL_REC_HDR, SPOOL_MAGIC_LEN) !=
		    SPOOL_REC_HDR) {
			if (errno == 0)
				errno = EIO;
			goto out;
		}
	}
	r = 0;
out:
	free(env);
	return r;
}

static void
spool_unlink_incoming(struct spool *s, const char *id)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", s->incoming, id);
	unlink(path);
}

void
spool_commit_batch(struct spool *s, struct spool_msg_list *batch)
{
	struct spool_msg *m;
	int renamed = 0;

	/* All writes first, then all syncs: no file creation waits behind a commit. */
	TAILQ_FOREACH(m, batch, entry)
	{
		if (m->err == 0 && spool_commit_write(s, m) < 0)
			m->err = errno ? errno : EIO;
	}
	/*
	 * Start write-back of every file before waiting for any: with delayed
	 * allocation, this allocates all their blocks in the running journal
	 * transaction, so the first fdatasync() commits them all and the
	 * others find nothing left to do.
	 */
	TAILQ_FOREACH(m, batch, entry)
	{
		if (m->err == 0)
			sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	TAILQ_FOREACH(m, batch, entry)
	{
		if (m->err == 0 && fdatasync(m->fd) < 0)
			m->err = errno ? errno : EIO;
		if (m->fd >= 0) {
			close(m->fd);
			m->fd = -1;
		}
		if (m->err)
			spool_unlink_incoming(s, m->id);
	}
	TAILQ_FOREACH(m, batch, entry)
	{
		char from[4096], to[4096];

		if (m->err)
			continue;
		snprintf(from, sizeof(from), "%s/%s", s->incoming, m->id);
		snprintf(to, sizeof(to), "%s/%s", s->queue, m->id);
		/* RENAME_NOREPLACE: a queue id is never reused over a live file. */
		if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) < 0) {
			m->err = errno;
			unlink(from);
			continue;
		}
		renamed++;
	}
	if (renamed && fsync(s->queue_fd) < 0) {
		int e = errno;
		log_error("event=spool_commit error=fsync dir=%s reason=\"%s\"", s->queue,
		          strerror(e));
		/* Durability unknown: refuse the whole batch; the clients retry. */
		TAILQ_FOREACH(m, batch, entry)
		{
			if (m->err)
				continue;
			m->err = e;
			unlinkat(s->queue_fd, m->id, 0);
		}
	}
}

static void *
spool_committer(void *arg)
{
	struct spool *s = arg;
	struct spool_msg_list batch;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (TAILQ_EMPTY(&s->pending) && !s->stopping)
			pthread_cond_wait(&s->cond, &s->lock);
		if (TAILQ_EMPTY(&s->pending))
			break;
		TAILQ_INIT(&batch);
		TAILQ_CONCAT(&batch, &s->pending, entry);
		pthread_mutex_unlock(&s->lock);

		spool_commit_batch(s, &batch);

		pthread_mutex_lock(&s->lock);
		TAILQ_CONCAT(&s->done, &batch, entry);
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
		if (m->err == 0 && s->committed_fn)
			s->committed_fn(s->committed_arg, m->id);
		spool_msg_free(m);
	}
}

int
spool_start(struct spool *s, struct event_base *base, spool_committed_fn fn, void *arg)
{
	s->committed_fn = fn;
	s->committed_arg = arg;
	s->done_ev = event_new(base, -1, 0, spool_done_cb, s);
	if (s->done_ev == NULL)
		return -1;
	if (pthread_create(&s->thread, NULL, spool_committer, s) != 0) {
		event_free(s->done_ev);
		s->done_ev = NULL;
		return -1;
	}
	s->running = true;
	return 0;
}

void
spool_stop(struct spool *s)
{
	if (!s->running)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
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
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void
spool_msg_forget(struct spool_msg *m)
{
	m->cb = NULL;
	m->cb_arg = NULL;
}

/*
 * spool.c - queue files: ids, writing, the on-disk format, reading,
 * recovery (see spool.h; the commit threads are in spool_commit.c).
 *
 * Queue file layout (all integers big-endian):
 *   "MOATQ1\r\n"
 *   'B' u32 len  <len body octets: the message as it goes downstream>
 *   envelope records: type u8, u32 len, payload (text, no terminator)
 *   'E' u32 12   u64 body length, u32 CRC-32 of the body and the
 *                envelope records (excluding the END record itself)
 *   end of file
 */
#include "spool_internal.h"
#include "../common/log.h"
#include "../common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static int
spool_mkdir(const char *path, char *err, size_t errsize)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errsize, "mkdir %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

struct spool *
spool_open(const char *data_dir, uint64_t min_free, char *err, size_t errsize)
{
	struct spool *s = xcalloc(1, sizeof(*s));
	struct timespec ts;

	s->dir = xstrdup(data_dir);
	s->incoming = xasprintf("%s/incoming", data_dir);
	s->queue = xasprintf("%s/queue", data_dir);
	s->corrupt = xasprintf("%s/corrupt", data_dir);
	s->quarantine = xasprintf("%s/quarantine", data_dir);
	s->queue_fd = -1;
	s->quarantine_fd = -1;
	s->min_free = min_free;
	if (spool_mkdir(s->dir, err, errsize) < 0 || spool_mkdir(s->incoming, err, errsize) < 0 ||
	    spool_mkdir(s->queue, err, errsize) < 0 || spool_mkdir(s->corrupt, err, errsize) < 0 ||
	    spool_mkdir(s->quarantine, err, errsize) < 0)
		goto fail;
	if ((s->queue_fd = open(s->queue, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errsize, "open %s: %s", s->queue, strerror(errno));
		goto fail;
	}
	if ((s->quarantine_fd = open(s->quarantine, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errsize, "open %s: %s", s->quarantine, strerror(errno));
		goto fail;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	s->id_counter = (uint32_t)(ts.tv_nsec ^ getpid());
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond_pending, NULL);
	pthread_cond_init(&s->cond_renamed, NULL);
	TAILQ_INIT(&s->pending);
	TAILQ_INIT(&s->renamed);
	TAILQ_INIT(&s->done);
	return s;
fail:
	spool_close(s);
	return NULL;
}

void
spool_close(struct spool *s)
{
	if (s == NULL)
		return;
	if (s->queue_fd >= 0)
		close(s->queue_fd);
	if (s->quarantine_fd >= 0)
		close(s->quarantine_fd);
	free(s->quarantine);
	free(s->dir);
	free(s->incoming);
	free(s->queue);
	free(s->corrupt);
	free(s);
}

bool
spool_id_valid(const char *id)
{
	size_t i;

	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return id[i] == '\0';
}

long
spool_recover(struct spool *s, void (*fn)(void *arg, const char *id), void *arg)
{
	struct dirent *de;
	long found = 0, removed = 0;
	DIR *d;

	if ((d = opendir(s->incoming)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
		else
			log_warn("event=spool_recover error=unlink file=incoming/%s reason=\"%s\"",
			         de->d_name, strerror(errno));
	}
	closedir(d);
	if ((d = opendir(s->queue)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!spool_id_valid(de->d_name)) {
			log_warn("event=spool_recover file=queue/%s action=ignored "
			         "reason=\"not a queue id\"",
			         de->d_name);
			continue;
		}
		found++;
		fn(arg, de->d_name);
	}
	closedir(d);
	log_info("event=spool_recover queued=%ld incomplete_removed=%ld", found, removed);
	return found;
}

bool
spool_has_room(struct spool *s)
{
	uint64_t now = clock_ms();
	struct statvfs vfs;

	if (s->min_free == 0)
		return true;
	if (s->room_checked_ms != 0 && now - s->room_checked_ms < 1000)
		return s->room;
	s->room_checked_ms = now;
	if (statvfs(s->queue, &vfs) < 0)
		s->room = true; /* the write path will report a real error */
	else
		s->room = (uint64_t)vfs.f_bavail * vfs.f_frsize >= s->min_free;
	return s->room;
}

/* --- envelope --- */

void
spool_env_add_rcpt(struct spool_env *env, const char *addr, unsigned notify, const char *orcpt)
{
	struct spool_rcpt *r;

	env->rcpts = xrealloc(env->rcpts, (env->nrcpts + 1) * sizeof(*env->rcpts));
	r = &env->rcpts[env->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(addr);
	r->notify = notify;
	r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
}

void
spool_env_clear(struct spool_env *env)
{
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].status);
		free(env->rcpts[i].remote);
		free(env->rcpts[i].diag);
	}
	free(env->rcpts);
	free(env->client_addr);
	free(env->helo);
	free(env->protocol);
	free(env->sender);
	free(env->body_type);
	free(env->ret);
	free(env->envid);
	free(env->head);
	free(env->verdict);
	memset(env, 0, sizeof(*env));
}

/* --- writing --- */

void
spool_new_id(struct spool *s, char id[SPOOL_ID_LEN + 1])
{
	struct timespec ts;
	uint64_t ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	/* Any thread may create messages (the delivery thread writes DSNs). */
	snprintf(id, SPOOL_ID_LEN + 1, "%011llx%05x", (unsigned long long)(ms & 0xfffffffffffULL),
	         __atomic_add_fetch(&s->id_counter, 1, __ATOMIC_RELAXED) & 0xfffff);
}

struct spool_msg *
spool_msg_new(struct spool *s)
{
	struct spool_msg *m = xcalloc(1, sizeof(*m));

	spool_new_id(s, m->id);
	m->spool = s;
	m->fd = -1;
	m->crc = (uint32_t)crc32(0L, Z_NULL, 0);
	return m;
}

const char *
spool_msg_id(const struct spool_msg *m)
{
	return m->id;
}

uint64_t
spool_msg_size(const struct spool_msg *m)
{
	return m->size;
}

void
spool_put_rec_hdr(unsigned char *p, int type, uint32_t len)
{
	p[0] = (unsigned char)type;
	p[1] = (unsigned char)(len >> 24);
	p[2] = (unsigned char)(len >> 16);
	p[3] = (unsigned char)(len >> 8);
	p[4] = (unsigned char)len;
}

/* Move the message to its incoming file and write out the buffer. */
static int
spool_msg_spill(struct spool_msg *m)
{
	if (m->fd < 0) {
		unsigned char hdr[SPOOL_MAGIC_LEN + SPOOL_REC_HDR];
		char path[4096];

		if (!path_fmt(path, sizeof(path), "%s/%s", m->spool->incoming, m->id))
			return -1;
		/* read-write: the scan maps it (spool_msg_map) */
		m->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (m->fd < 0)
			return -1;
		memcpy(hdr, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
		/* The body length is filled in at commit. */
		spool_put_rec_hdr(hdr + SPOOL_MAGIC_LEN, SPOOL_R_BODY, 0);
		if (write_all(m->fd, hdr, sizeof(hdr)) < 0)
			return -1;
	}
	if (write_all(m->fd, m->buf, m->len) < 0)
		return -1;
	m->len = 0;
	return 0;
}

int
spool_msg_write(struct spool_msg *m, const void *p, size_t n)
{
	if (m->err) {
		errno = m->err;
		return -1;
	}
	m->crc = (uint32_t)crc32(m->crc, p, (uInt)n);
	m->size += n;
	if (m->len + n > m->cap) {
		size_t cap = m->cap ? m->cap : 4096;
		while (cap < m->len + n && cap < SPOOL_MEM_MAX)
			cap *= 2;
		if (cap < m->len + n) {
			/* Spill what we have, then keep at most SPOOL_MEM_MAX in memory. */
			if (spool_msg_spill(m) < 0)
				goto fail;
			if (n >= SPOOL_MEM_MAX) {
				if (write_all(m->fd, p, n) < 0)
					goto fail;
				return 0;
			}
		}
		if (cap > m->cap) {
			m->buf = xrealloc(m->buf, cap);
			m->cap = cap;
		}
	}
	memcpy(m->buf + m->len, p, n);
	m->len += n;
	return 0;
fail:
	m->err = errno ? errno : EIO;
	return -1;
}

void
spool_msg_set_env(struct spool_msg *m, struct spool_env *env)
{
	spool_env_clear(&m->env);
	m->env = *env;
	memset(env, 0, sizeof(*env));
	memcpy(m->env.id, m->id, sizeof(m->env.id));
}

const struct spool_env *
spool_msg_env(const struct spool_msg *m)
{
	return &m->env;
}

void
spool_msg_free(struct spool_msg *m)
{
	if (m->map)
		munmap(m->map, m->map_len);
	if (m->fd >= 0)
		close(m->fd);
	spool_env_clear(&m->env);
	free(m->buf);
	free(m);
}

const unsigned char *
spool_msg_map(struct spool_msg *m, size_t *len)
{
	static const unsigned char empty[1];
	size_t head = SPOOL_MAGIC_LEN + SPOOL_REC_HDR;

	*len = 0;
	if (m->err) {
		errno = m->err;
		return NULL;
	}
	if (m->fd < 0) {
		*len = m->len;
		return m->len ? (const unsigned char *)m->buf : empty;
	}
	/* spilled: put the rest in the file, then map it (the page cache, no copy) */
	if (m->len > 0 && spool_msg_spill(m) < 0) {
		m->err = errno;
		return NULL;
	}
	if (m->map == NULL) {
		m->map_len = (size_t)m->size + head;
		m->map = mmap(NULL, m->map_len, PROT_READ, MAP_SHARED, m->fd, 0);
		if (m->map == MAP_FAILED) {
			m->map = NULL;
			return NULL;
		}
	}
	*len = (size_t)m->size;
	return (const unsigned char *)m->map + head;
}

void
spool_msg_set_scan(struct spool_msg *m, char *head, size_t head_len, uint64_t head_skip,
                   char *summary, bool quarantine)
{
	free(m->env.head);
	free(m->env.verdict);
	m->env.head = head;
	m->env.head_len = head ? head_len : 0;
	m->env.head_skip = head_skip <= m->size ? head_skip : 0;
	m->env.verdict = summary;
	m->quarantine = quarantine;
}

void
spool_msg_set_quarantine(struct spool_msg *m, bool q)
{
	m->quarantine = q;
}

bool
spool_msg_quarantined(const struct spool_msg *m)
{
	return m->quarantine;
}

void
spool_msg_abort(struct spool_msg *m)
{
	if (m->fd >= 0) {
		char path[4096];
		if (path_fmt(path, sizeof(path), "%s/%s", m->spool->incoming, m->id))
			unlink(path);
	}
	spool_msg_free(m);
}

static void
spool_buf_rec(char **buf, size_t *len, size_t *cap, int type, const char *v, size_t vlen)
{
	if (*len + SPOOL_REC_HDR + vlen > *cap) {
		*cap = (*len + SPOOL_REC_HDR + vlen) * 2 + 256;
		*buf = xrealloc(*buf, *cap);
	}
	spool_put_rec_hdr((unsigned char *)*buf + *len, type, (uint32_t)vlen);
	memcpy(*buf + *len + SPOOL_REC_HDR, v, vlen);
	*len += SPOOL_REC_HDR + vlen;
}

static void
spool_buf_str(char **buf, size_t *len, size_t *cap, int type, const char *v)
{
	if (v != NULL)
		spool_buf_rec(buf, len, cap, type, v, strlen(v));
}

char *
spool_env_serialise(const struct spool_msg *m, size_t *outlen)
{
	const struct spool_env *e = &m->env;
	size_t len = 0, cap = 512;
	char *buf = xmalloc(cap);
	char num[32];
	unsigned char end[SPOOL_END_LEN];
	uint32_t crc;

	spool_buf_str(&buf, &len, &cap, SPOOL_R_ID, m->id);
	snprintf(num, sizeof(num), "%lld", (long long)e->received_at);
	spool_buf_str(&buf, &len, &cap, SPOOL_R_TIME, num);
	spool_buf_str(&buf, &len, &cap, SPOOL_R_CLIENT, e->client_addr);
	spool_buf_str(&buf, &len, &cap, SPOOL_R_HELO, e->helo);
	spool_buf_str(&buf, &len, &cap, SPOOL_R_PROTO, e->protocol);
	spool_buf_str(&buf, &len, &cap, SPOOL_R_SENDER, e->sender ? e->sender : "");
	spool_buf_str(&buf, &len, &cap, SPOOL_R_BODYTYPE, e->body_type);
	if (e->smtputf8)
		spool_buf_str(&buf, &len, &cap, SPOOL_R_UTF8, "1");
	spool_buf_str(&buf, &len, &cap, SPOOL_R_RET, e->ret);
	spool_buf_str(&buf, &len, &cap, SPOOL_R_ENVID, e->envid);
	spool_buf_str(&buf, &len, &cap, SPOOL_R_VERDICT, e->verdict);
	if (e->head_len > 0 || e->head_skip > 0) {
		char *h = xmalloc(8 + e->head_len);

		for (int i = 0; i < 8; i++)
			h[i] = (char)(unsigned char)(e->head_skip >> (56 - 8 * i));
		memcpy(h + 8, e->head, e->head_len);
		spool_buf_rec(&buf, &len, &cap, SPOOL_R_HEAD, h, 8 + e->head_len);
		free(h);
	}
	for (size_t i = 0; i < e->nrcpts; i++) {
		spool_buf_str(&buf, &len, &cap, SPOOL_R_RCPT, e->rcpts[i].addr);
		if (e->rcpts[i].notify) {
			snprintf(num, sizeof(num), "%u", e->rcpts[i].notify);
			spool_buf_str(&buf, &len, &cap, SPOOL_R_NOTIFY, num);
		}
		spool_buf_str(&buf, &len, &cap, SPOOL_R_ORCPT, e->rcpts[i].orcpt);
	}
	crc = (uint32_t)crc32(m->crc, (const Bytef *)buf, (uInt)len);
	for (int i = 0; i < 8; i++)
		end[i] = (unsigned char)(m->size >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		end[8 + i] = (unsigned char)(crc >> (24 - 8 * i));
	spool_buf_rec(&buf, &len, &cap, SPOOL_R_END, (const char *)end, sizeof(end));
	*outlen = len;
	return buf;
}

/* --- reading --- */

static uint32_t
get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static char *
rec_str(const unsigned char *p, uint32_t len)
{
	if (memchr(p, '\0', len) != NULL)
		return NULL;
	return xstrndup((const char *)p, len);
}

/* Replace *slot with the record's text; false if the record has a NUL. */
static bool
rec_set(char **slot, const unsigned char *p, uint32_t len)
{
	char *v = rec_str(p, len);

	if (v == NULL)
		return false;
	free(*slot);
	*slot = v;
	return true;
}

/* Split a status payload "idx TAB status TAB remote TAB diag TAB when TAB report" in place. */
static void
spool_status_fields(char *v, char **f, size_t nf)
{
	for (size_t i = 0; i < nf; i++) {
		f[i] = v;
		if (v != NULL && (v = strchr(v, '\t')) != NULL)
			*v++ = '\0';
	}
}

/*
 * Status records after END: type, u32 length, payload, CRC-32 of the
 * three. The first one that is incomplete or fails its CRC ends the list
 * (a crash while appending): what it would have said is not known.
 */
static size_t
spool_parse_status(const unsigned char *p, size_t len, struct spool_env *env)
{
	size_t off = 0;

	while (len - off >= SPOOL_REC_HDR + 4) {
		int type = p[off];
		uint32_t rlen = get_u32(p + off + 1), crc;
		char *v, *f[6];
		uint64_t idx, when;

		if (rlen > SPOOL_STATUS_MAX || rlen + 4 > len - off - SPOOL_REC_HDR)
			return off;
		crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + off, SPOOL_REC_HDR + rlen);
		if (crc != get_u32(p + off + SPOOL_REC_HDR + rlen))
			return off;
		v = xstrndup((const char *)p + off + SPOOL_REC_HDR, rlen);
		off += SPOOL_REC_HDR + rlen + 4;
		switch (type) {
		case SPOOL_S_DELIVERED:
		case SPOOL_S_FAILED: {
			struct spool_rcpt *r;

			spool_status_fields(v, f, nitems(f));
			if (f[0] == NULL || parse_u64(f[0], strlen(f[0]), SIZE_MAX, &idx) < 0 ||
			    idx >= env->nrcpts)
				break;
			r = &env->rcpts[idx];
			r->state = type == SPOOL_S_DELIVERED ? SPOOL_RCPT_DELIVERED
			                                     : SPOOL_RCPT_FAILED;
			free(r->status);
			free(r->remote);
			free(r->diag);
			r->status = f[1] && *f[1] ? xstrdup(f[1]) : NULL;
			r->remote = f[2] && *f[2] ? xstrdup(f[2]) : NULL;
			r->diag = f[3] && *f[3] ? xstrdup(f[3]) : NULL;
			if (f[4] && parse_u64(f[4], strlen(f[4]), INT64_MAX, &when) == 0)
				r->when = (int64_t)when;
			r->report = f[5] && (f[5][0] == 'D' || f[5][0] == 'R') ? f[5][0] : 0;
			break;
		}
		case SPOOL_S_HOLD:
			env->held = strcmp(v, "1") == 0;
			break;
		case SPOOL_S_DSN: {
			uint64_t bits;
			if (parse_u64(v, strlen(v), 3, &bits) == 0)
				env->reports_sent |= (unsigned)bits;
			break;
		}
		case SPOOL_S_DELAY_WARNED:
			env->delay_warned = true;
			break;
		default:
			break; /* from a newer moat */
		}
		free(v);
	}
	return off;
}

/* Magic and body record header: the body length, or -1 if not a queue file. */
static int
spool_parse_head(const unsigned char *p, size_t len, uint64_t *blen)
{
	if (len < SPOOL_MAGIC_LEN + SPOOL_REC_HDR || memcmp(p, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0 ||
	    p[SPOOL_MAGIC_LEN] != SPOOL_R_BODY)
		return -1;
	*blen = get_u32(p + SPOOL_MAGIC_LEN + 1);
	return 0;
}

/*
 * The envelope records and END after a body of blen octets whose CRC-32
 * is crc: everything from the end of the body to the end of the file.
 */
static enum spool_status
spool_parse_tail(const unsigned char *p, size_t len, uint64_t blen, uint32_t crc,
                 struct spool_env *env)
{
	size_t off = 0;
	uint64_t end_blen = 0;
	uint32_t end_crc = 0;
	bool have_end = false, have_sender = false;
	uint64_t num;

	memset(env, 0, sizeof(*env));
	while (off < len) {
		uint32_t rlen;
		int type;
		const unsigned char *v;

		if (have_end)
			break; /* status records follow */
		if (len - off < SPOOL_REC_HDR)
			goto corrupt;
		type = p[off];
		rlen = get_u32(p + off + 1);
		if (rlen > (type == SPOOL_R_HEAD ? SPOOL_HEAD_MAX : SPOOL_REC_MAX) ||
		    rlen > len - off - SPOOL_REC_HDR)
			goto corrupt;
		v = p + off + SPOOL_REC_HDR;
		if (type == SPOOL_R_END) {
			if (rlen != SPOOL_END_LEN)
				goto corrupt;
			for (int i = 0; i < 8; i++)
				end_blen = end_blen << 8 | v[i];
			end_crc = get_u32(v + 8);
			have_end = true;
			off += SPOOL_REC_HDR + rlen;
			continue;
		}
		crc = (uint32_t)crc32(crc, p + off, SPOOL_REC_HDR + rlen);
		off += SPOOL_REC_HDR + rlen;
		switch (type) {
		case SPOOL_R_ID:
			if (rlen != SPOOL_ID_LEN)
				goto corrupt;
			memcpy(env->id, v, SPOOL_ID_LEN);
			env->id[SPOOL_ID_LEN] = '\0';
			break;
		case SPOOL_R_TIME:
			if (parse_u64((const char *)v, rlen, INT64_MAX, &num) < 0)
				goto corrupt;
			env->received_at = (int64_t)num;
			break;
		case SPOOL_R_CLIENT:
			if (!rec_set(&env->client_addr, v, rlen))
				goto corrupt;
			break;
		case SPOOL_R_HELO:
			if (!rec_set(&env->helo, v, rlen))
				goto corrupt;
			break;
		case SPOOL_R_PROTO:
			if (!rec_set(&env->protocol, v, rlen))
				goto corrupt;
			break;
		case SPOOL_R_SENDER:
			if (!rec_set(&env->sender, v, rlen))
				goto corrupt;
			have_sender = true;
			break;
		case SPOOL_R_BODYTYPE:
			if (!rec_set(&env->body_type, v, rlen))
				goto corrupt;
			break;
		case SPOOL_R_UTF8:
			env->smtputf8 = true;
			break;
		case SPOOL_R_RET:
			if (!rec_set(&env->ret, v, rlen))
				goto corrupt;
			break;
		case SPOOL_R_ENVID:
			if (!rec_set(&env->envid, v, rlen))
				goto corrupt;
			break;
		case SPOOL_R_VERDICT:
			if (!rec_set(&env->verdict, v, rlen))
				goto corrupt;
			break;
		case SPOOL_R_HEAD:
			if (rlen < 8 || env->head != NULL)
				goto corrupt;
			env->head_skip = 0;
			for (int i = 0; i < 8; i++)
				env->head_skip = env->head_skip << 8 | v[i];
			if (env->head_skip > blen)
				goto corrupt;
			env->head_len = rlen - 8;
			env->head = xmalloc(env->head_len + 1);
			memcpy(env->head, v + 8, env->head_len);
			env->head[env->head_len] = '\0';
			break;
		case SPOOL_R_RCPT: {
			char *a = rec_str(v, rlen);
			if (a == NULL || rlen == 0) {
				free(a);
				goto corrupt;
			}
			spool_env_add_rcpt(env, a, 0, NULL);
			free(a);
			break;
		}
		case SPOOL_R_NOTIFY:
			if (env->nrcpts == 0 || parse_u64((const char *)v, rlen, 15, &num) < 0)
				goto corrupt;
			env->rcpts[env->nrcpts - 1].notify = (unsigned)num;
			break;
		case SPOOL_R_ORCPT:
			if (env->nrcpts == 0 ||
			    !rec_set(&env->rcpts[env->nrcpts - 1].orcpt, v, rlen))
				goto corrupt;
			break;
		default:
			/* Unknown informational record from a newer moat: skip. */
			if (type >= 'A' && type <= 'Z')
				goto corrupt;
			break;
		}
	}
	if (!have_end || end_blen != blen || end_crc != crc || !have_sender || env->nrcpts == 0 ||
	    !spool_id_valid(env->id))
		goto corrupt;
	{
		size_t good = spool_parse_status(p + off, len - off, env);

		env->status_end = off + good; /* relative to p: callers add the body's end */
		env->status_torn = good < len - off;
	}
	return SPOOL_OK;
corrupt:
	spool_env_clear(env);
	return SPOOL_ECORRUPT;
}

enum spool_status
spool_parse(const unsigned char *p, size_t len, struct spool_env *env, size_t *body_offset,
            uint64_t *body_len)
{
	const size_t off = SPOOL_MAGIC_LEN + SPOOL_REC_HDR;
	uint64_t blen;
	uint32_t crc;

	memset(env, 0, sizeof(*env));
	if (spool_parse_head(p, len, &blen) < 0 || blen > len - off)
		return SPOOL_ECORRUPT;
	*body_offset = off;
	*body_len = blen;
	crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + off, (uInt)blen);
	return spool_parse_tail(p + off + blen, len - off - blen, blen, crc, env);
}

/* pread() exactly n octets at off; -1 with errno (EIO for a short file). */
static int
spool_pread(int fd, void *buf, size_t n, off_t off)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

static enum spool_status
spool_file_open_in(const char *dir, const char *id, struct spool_file *f)
{
	const size_t head = SPOOL_MAGIC_LEN + SPOOL_REC_HDR;
	unsigned char hbuf[SPOOL_MAGIC_LEN + SPOOL_REC_HDR], *buf = NULL;
	enum spool_status st = SPOOL_ECORRUPT;
	uint64_t blen, tail;
	uint32_t crc;
	struct stat sb;
	char path[4096];

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	if (!spool_id_valid(id) || !path_fmt(path, sizeof(path), "%s/%s", dir, id))
		return SPOOL_ENOENT;
	if ((f->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? SPOOL_ENOENT : SPOOL_EIO;
	if (fstat(f->fd, &sb) < 0)
		goto eio;
	/*
	 * Read with pread(), not mmap(): a read error or a file truncated
	 * behind our back must be an error here, not a SIGBUS. The whole
	 * file is CRC-checked before anything of it is used.
	 */
	if ((uint64_t)sb.st_size < head)
		goto fail;
	if (spool_pread(f->fd, hbuf, head, 0) < 0)
		goto eio;
	if (spool_parse_head(hbuf, head, &blen) < 0 || blen > (uint64_t)sb.st_size - head)
		goto fail;
	tail = (uint64_t)sb.st_size - head - blen;
	if (tail > SPOOL_TAIL_MAX)
		goto fail;
	buf = xmalloc(SPOOL_READ_CHUNK > tail ? SPOOL_READ_CHUNK : (size_t)tail);
	crc = (uint32_t)crc32(0L, Z_NULL, 0);
	for (uint64_t done = 0; done < blen;) {
		size_t n =
		        blen - done < SPOOL_READ_CHUNK ? (size_t)(blen - done) : SPOOL_READ_CHUNK;
		if (spool_pread(f->fd, buf, n, (off_t)(head + done)) < 0)
			goto eio;
		crc = (uint32_t)crc32(crc, buf, (uInt)n);
		done += n;
	}
	if (spool_pread(f->fd, buf, (size_t)tail, (off_t)(head + blen)) < 0)
		goto eio;
	st = spool_parse_tail(buf, (size_t)tail, blen, crc, &f->env);
	if (st == SPOOL_OK && strcmp(f->env.id, id) != 0) {
		spool_env_clear(&f->env);
		st = SPOOL_ECORRUPT;
	}
	if (st != SPOOL_OK)
		goto fail;
	free(buf);
	f->body_offset = (off_t)head;
	f->body_len = blen;
	f->env.status_end += head + blen;
	return SPOOL_OK;
eio:
	st = SPOOL_EIO;
fail:
	free(buf);
	close(f->fd);
	f->fd = -1;
	return st;
}

enum spool_status
spool_file_open(struct spool *s, const char *id, struct spool_file *f)
{
	return spool_file_open_in(s->queue, id, f);
}

uint64_t
spool_env_delivered_len(const struct spool_env *env, uint64_t body_len)
{
	uint64_t skip = env && env->head_skip <= body_len ? env->head_skip : 0;

	return (env ? env->head_len : 0) + body_len - skip;
}

void
spool_body_set_head(struct spool_body *b, const char *head, size_t head_len)
{
	b->head = head;
	b->head_len = head_len;
	b->len = head_len + b->body_len - b->skip;
}

ssize_t
spool_body_pread(const struct spool_body *b, void *buf, size_t n, uint64_t pos)
{
	size_t got = 0;

	if (pos >= b->len || n == 0)
		return 0;
	if (n > b->len - pos)
		n = (size_t)(b->len - pos);
	if (pos < b->head_len) {
		got = b->head_len - (size_t)pos < n ? b->head_len - (size_t)pos : n;
		memcpy(buf, b->head + pos, got);
		if (got == n)
			return (ssize_t)got;
		pos += got;
	}
	ssize_t r = pread(b->fd, (char *)buf + got, n - got,
	                  b->offset + (off_t)(b->skip + pos - b->head_len));
	if (r < 0)
		return got ? (ssize_t)got : -1;
	return (ssize_t)got + r;
}

int
spool_body_open(struct spool *s, const char *id, const struct spool_env *env, struct spool_body *b)
{
	unsigned char h[SPOOL_MAGIC_LEN + SPOOL_REC_HDR];
	char path[4096];
	uint64_t blen;

	b->fd = -1;
	if (!spool_id_valid(id) || !path_fmt(path, sizeof(path), "%s/%s", s->queue, id)) {
		errno = EINVAL;
		return -1;
	}
	if ((b->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (spool_pread(b->fd, h, sizeof(h), 0) < 0 || spool_parse_head(h, sizeof(h), &blen) < 0) {
		close(b->fd);
		b->fd = -1;
		errno = EIO;
		return -1;
	}
	b->offset = (off_t)sizeof(h);
	b->len = blen;
	b->body_len = blen;
	b->head = NULL;
	b->head_len = 0;
	b->skip = 0;
	if (env && (env->head_len > 0 || env->head_skip > 0) && env->head_skip <= blen) {
		b->head = env->head;
		b->head_len = env->head_len;
		b->skip = env->head_skip;
		b->len = spool_env_delivered_len(env, blen);
	}
	return 0;
}

void
spool_file_close(struct spool_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	spool_env_clear(&f->env);
}

/* Append one text field to a status payload; controls and tabs become spaces. */
static void
spool_status_put(char *buf, size_t *len, size_t cap, const char *v, bool last)
{
	for (; v != NULL && *v && *len + 2 < cap; v++)
		buf[(*len)++] = ((unsigned char)*v < 0x20 || *v == 0x7f) ? ' ' : *v;
	if (!last && *len + 1 < cap)
		buf[(*len)++] = '\t';
}

int
spool_mark(struct spool *s, const char *id, const struct spool_mark *marks, size_t n)
{
	unsigned char *out = xmalloc(n * (SPOOL_REC_HDR + SPOOL_STATUS_MAX + 4) + 1);
	size_t olen = 0;
	char path[4096];
	int fd, r = -1, saved;

	if (!spool_id_valid(id) || !path_fmt(path, sizeof(path), "%s/%s", s->queue, id)) {
		free(out);
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct spool_mark *m = &marks[i];
		char *v = (char *)out + olen + SPOOL_REC_HDR, num[32];
		size_t vlen = 0;
		int type;
		uint32_t crc;

		switch (m->what) {
		case SPOOL_MARK_RCPT:
			type = m->state == SPOOL_RCPT_DELIVERED ? SPOOL_S_DELIVERED
			                                        : SPOOL_S_FAILED;
			snprintf(num, sizeof(num), "%zu", m->rcpt);
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, num, false);
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, m->status, false);
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, m->remote, false);
			/* the diagnostic may be long: keep room for the time */
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX - 32, m->diag, false);
			snprintf(num, sizeof(num), "%lld", (long long)m->when);
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, num, false);
			num[0] = m->report ? m->report : '\0';
			num[1] = '\0';
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, num, true);
			break;
		case SPOOL_MARK_HOLD:
			type = SPOOL_S_HOLD;
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, m->held ? "1" : "0", true);
			break;
		case SPOOL_MARK_REPORTS:
			type = SPOOL_S_DSN;
			snprintf(num, sizeof(num), "%u", m->reports & 3);
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, num, true);
			break;
		default:
			type = SPOOL_S_DELAY_WARNED;
			spool_status_put(v, &vlen, SPOOL_STATUS_MAX, "1", true);
			break;
		}
		spool_put_rec_hdr(out + olen, type, (uint32_t)vlen);
		crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), out + olen, SPOOL_REC_HDR + vlen);
		olen += SPOOL_REC_HDR + vlen;
		for (int k = 0; k < 4; k++)
			out[olen++] = (unsigned char)(crc >> (24 - 8 * k));
	}
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0)
		goto out;
	{
		struct stat sb;
		off_t before = fstat(fd, &sb) == 0 ? sb.st_size : -1;

		if (write_all(fd, out, olen) == 0 && fdatasync(fd) == 0) {
			r = 0;
		} else if (before >= 0) {
			/* a half-written record would hide every later one: take it back */
			saved = errno;
			if (ftruncate(fd, before) < 0)
				log_error("event=spool_mark id=%s error=ftruncate", id);
			errno = saved;
		}
	}
	saved = errno;
	close(fd);
	errno = saved;
out:
	free(out);
	return r;
}

int
spool_cut_torn(struct spool *s, const char *id, size_t end)
{
	char path[4096];
	int fd, r;

	if (!spool_id_valid(id) || !path_fmt(path, sizeof(path), "%s/%s", s->queue, id)) {
		errno = EINVAL;
		return -1;
	}
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return -1;
	r = ftruncate(fd, (off_t)end) == 0 && fdatasync(fd) == 0 ? 0 : -1;
	close(fd);
	return r;
}

int
spool_remove(struct spool *s, const char *id)
{
	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	return unlinkat(s->queue_fd, id, 0);
}

int
spool_set_aside(struct spool *s, const char *id)
{
	char from[4096], to[4096];

	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (!path_fmt(from, sizeof(from), "%s/%s", s->queue, id) ||
	    !path_fmt(to, sizeof(to), "%s/%s", s->corrupt, id))
		return -1;
	return rename(from, to);
}

/* --- quarantine/ --- */

enum spool_status
spool_quarantine_open(struct spool *s, const char *id, struct spool_file *f)
{
	return spool_file_open_in(s->quarantine, id, f);
}

int
spool_quarantine_read(const struct spool_file *f, unsigned char **body)
{
	unsigned char *p;

	if (f->body_len > SIZE_MAX - 1) {
		errno = EFBIG;
		return -1;
	}
	p = xmalloc((size_t)f->body_len + 1);
	if (spool_pread(f->fd, p, (size_t)f->body_len, f->body_offset) < 0) {
		free(p);
		return -1;
	}
	p[f->body_len] = '\0';
	*body = p;
	return 0;
}

int
spool_quarantine_remove(struct spool *s, const char *id)
{
	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (unlinkat(s->quarantine_fd, id, 0) < 0)
		return -1;
	return fsync(s->quarantine_fd);
}

int
spool_quarantine_set_aside(struct spool *s, const char *id)
{
	char from[4096], to[4096];

	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (!path_fmt(from, sizeof(from), "%s/%s", s->quarantine, id) ||
	    !path_fmt(to, sizeof(to), "%s/q-%s", s->corrupt, id))
		return -1;
	return rename(from, to);
}

int
spool_queued(struct spool *s, const char *id)
{
	if (!spool_id_valid(id))
		return 0;
	if (faccessat(s->queue_fd, id, F_OK, 0) == 0)
		return 1;
	return errno == ENOENT ? 0 : -1;
}

long
spool_quarantine_list(struct spool *s, void (*fn)(void *arg, const char *id), void *arg)
{
	struct dirent *de;
	long n = 0;
	DIR *d;

	if ((d = opendir(s->quarantine)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (!spool_id_valid(de->d_name))
			continue;
		n++;
		fn(arg, de->d_name);
	}
	closedir(d);
	return n;
}

/*
 * scan_env.c - what the scan pipeline keeps for the life of the process:
 * the resolver thread its checks ask (src/dns/dns_sync.c, one libunbound
 * context with the configured upstream) and moat's secret, from which
 * every protected domain's relay key is derived (data_dir/relay.secret,
 * 32 random octets made at the first start, owner-only).
 */
#include "scan_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../dns/dns_sync.h"

static enum dns_status
scan_env_txt(void *ctx, const char *name, int64_t deadline_ms, struct dns_txt_result *out)
{
	return dns_sync_txt(ctx, name, deadline_ms, out);
}

static enum dns_status
scan_env_addr(void *ctx, const char *name, int family, int64_t deadline_ms,
              struct dns_addr_result *out)
{
	return dns_sync_addr(ctx, name, family, deadline_ms, out);
}

static enum dns_status
scan_env_mx(void *ctx, const char *domain, int64_t deadline_ms, struct dns_mx_result *out)
{
	return dns_sync_mx(ctx, domain, deadline_ms, out);
}

static enum dns_status
scan_env_ptr(void *ctx, const char *ip, int64_t deadline_ms, struct dns_ptr_result *out)
{
	return dns_sync_ptr(ctx, ip, deadline_ms, out);
}

/* Read data_dir/relay.secret, or make it (create) when it does not exist. */
static int
scan_env_secret(const struct config *cfg, bool create, unsigned char out[32], char *err,
                size_t errsize)
{
	char path[4096], tmp[4096];
	int fd;

	if (!path_fmt(path, sizeof(path), "%s/relay.secret", cfg->data_dir) ||
	    !path_fmt(tmp, sizeof(tmp), "%s/relay.secret.tmp", cfg->data_dir)) {
		snprintf(err, errsize, "data_dir path too long");
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		ssize_t n = read(fd, out, 32);

		close(fd);
		if (n == 32)
			return 0;
		snprintf(err, errsize, "%s: not 32 octets", path);
		return -1;
	}
	if (errno != ENOENT || !create) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (RAND_bytes(out, 32) != 1) {
		snprintf(err, errsize, "no random octets for %s", path);
		return -1;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    write_all(fd, out, 32) < 0 || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -1;
	}
	/* a secret lost in a crash would change every relay key behind Exchange's rules */
	if ((fd = open(cfg->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(fd) < 0) {
		snprintf(err, errsize, "fsync %s: %s", cfg->data_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	log_info("event=relay_secret_created path=%s", path);
	return 0;
}

struct scan_env *
scan_env_new(const struct config *cfg, bool create_secret, char *err, size_t errsize)
{
	struct scan_env *env = xcalloc(1, sizeof(*env));
	struct dns_sync *ds;

	scan_init();
	if (scan_env_secret(cfg, create_secret, env->relay_secret, err, errsize) < 0) {
		if (create_secret) {
			free(env);
			return NULL;
		}
		/* moatctl without access to the secret: it shows no relay keys anyway */
		memset(env->relay_secret, 0, sizeof(env->relay_secret));
	}
	ds = dns_sync_start(cfg->dns_resolver[0] ? cfg->dns_resolver : NULL,
	                    (unsigned)cfg->dns_timeout, err, errsize);
	if (ds == NULL) {
		free(env);
		return NULL;
	}
	env->dns = (struct scan_dns_ops){
	        .txt = scan_env_txt,
	        .addr = scan_env_addr,
	        .mx = scan_env_mx,
	        .ptr = scan_env_ptr,
	        .ctx = ds,
	};
	return env;
}

void
scan_env_free(struct scan_env *env)
{
	if (env == NULL)
		return;
	dns_sync_stop(env->dns.ctx);
	free(env);
}

/*
 * slowsync.c - fault injection for tests: LD_PRELOAD it into moatd and
 * fdatasync() takes SLOW_SYNC_MS longer, like a slow disk. Used to hold a
 * session in its commit while the client keeps sending.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

int fdatasync(int fd);

int
fdatasync(int fd)
{
	static int (*real)(int);
	const char *ms = getenv("SLOW_SYNC_MS");

	if (real == NULL)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (ms != NULL)
		usleep((useconds_t)strtoul(ms, NULL, 10) * 1000);
	return real(fd);
}

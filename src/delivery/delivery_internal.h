/*
 * delivery_internal.h - the route back ends' interface.
 */
#ifndef MOAT_DELIVERY_INTERNAL_H
#define MOAT_DELIVERY_INTERNAL_H

#include "../spool/spool.h"

/*
 * Deliver the message in f to rcpt under root/maildir/. Returns 0, or -1
 * with errno (the caller retries later).
 */
int delivery_maildir(const char *root, const char *hostname, const struct spool_file *f,
                     const char *rcpt, char *path, size_t pathsize);

#endif

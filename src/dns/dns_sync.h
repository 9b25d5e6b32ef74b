/*
 * dns_sync.h - blocking DNS lookups for worker threads (the scan
 * pipeline), served by one resolver thread that runs src/dns on its own
 * event loop. Any thread may call the lookups; each returns by its
 * deadline (clock_ms() time) with DNS_TEMPFAIL if the answer has not come.
 */
#ifndef MOAT_DNS_SYNC_H
#define MOAT_DNS_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "dns.h"

struct dns_sync;

/* upstream and timeout_ms as for dns_new(). NULL with err set on failure. */
struct dns_sync *dns_sync_start(const char *upstream, unsigned timeout_ms, char *err,
                                size_t errsize);
/*
 * Stop the thread and free everything. Call it once no lookup is in
 * progress and none will start (moatd stops the scan workers first):
 * a lookup waiting in another thread would use freed memory.
 */
void dns_sync_stop(struct dns_sync *ds);

/* out->txt[] strings are malloc()ed and owned by the caller. */
enum dns_status dns_sync_txt(struct dns_sync *ds, const char *name, int64_t deadline_ms,
                             struct dns_txt_result *out);
enum dns_status dns_sync_addr(struct dns_sync *ds, const char *name, int family,
                              int64_t deadline_ms, struct dns_addr_result *out);
enum dns_status dns_sync_mx(struct dns_sync *ds, const char *domain, int64_t deadline_ms,
                            struct dns_mx_result *out);
enum dns_status dns_sync_ptr(struct dns_sync *ds, const char *ip, int64_t deadline_ms,
                             struct dns_ptr_result *out);

#endif

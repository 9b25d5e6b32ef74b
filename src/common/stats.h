/*
 * stats.h - moat's counters: incremented from any thread (relaxed
 * atomics), read by the control socket (moatctl stats) and, later, by
 * /metrics. Counters only ever go up; gauges (queue depth) are computed
 * where the state lives.
 */
#ifndef MOAT_STATS_H
#define MOAT_STATS_H

#include <stdint.h>

#define STATS_COUNTERS(X)                                                                          \
	X(smtp_connections, "SMTP connections accepted")                                           \
	X(smtp_refused_connections, "SMTP connections refused by session limits")                  \
	X(smtp_messages_accepted, "messages accepted (250 after DATA/BDAT)")                       \
	X(smtp_messages_refused, "messages refused at the end of the data")                        \
	X(scan_delivered, "messages scanned and passed")                                           \
	X(scan_quarantined, "messages scanned and quarantined")                                    \
	X(scan_rejected, "messages scanned and rejected (550 5.7.1)")                              \
	X(scan_tempfailed, "messages not scanned in time or without a required scanner (451)")     \
	X(smtp_rcpt_rejected, "recipients refused at RCPT")                                        \
	X(delivery_delivered, "recipients delivered")                                              \
	X(delivery_deferred, "delivery attempts deferred (per recipient)")                         \
	X(delivery_bounced, "recipients failed for good")                                          \
	X(delivery_dsn, "delivery reports written")

struct stats {
#define STATS_FIELD(name, doc) uint64_t name;
	STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
};

extern struct stats stats;

#define stats_inc(field) __atomic_add_fetch(&stats.field, 1, __ATOMIC_RELAXED)
#define stats_get(field) __atomic_load_n(&stats.field, __ATOMIC_RELAXED)

#endif

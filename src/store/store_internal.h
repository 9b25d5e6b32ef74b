/*
 * store_internal.h - what store.c shares with the backends: the backend
 * vtable (one per file, designated initialisers, STYLE.md 4) and struct
 * store. store.c checks every argument against the limits of store.h
 * before a backend sees it, so backends may rely on them.
 */
#ifndef MOAT_STORE_INTERNAL_H
#define MOAT_STORE_INTERNAL_H

#include "store.h"

#define STORE_ERR_MAX 256

/* A migration: sql/<backend>/NNN_name.sql, embedded by sql/embed.py. */
struct store_migration {
	unsigned version;
	const char *name;
	const char *sql;
};

struct store_backend {
	const char *name;
	/* Open path and migrate; the connection in s->db. */
	enum store_status (*open)(struct store *s, const char *path);
	void (*close)(struct store *s);
	enum store_status (*schema_version)(struct store *s, unsigned *in_db, unsigned *known);
	enum store_status (*batch_begin)(struct store *s);
	/* Commit (or roll back) and leave the batch. */
	enum store_status (*batch_end)(struct store *s, bool commit);

	enum store_status (*track_received)(struct store *s, const struct store_track_in *in);
	enum store_status (*track_verdict)(struct store *s, const char *id, enum store_verdict v,
	                                   double score, const char *symbols, const char *reason,
	                                   int64_t time_ms);
	enum store_status (*track_delivery)(struct store *s, const char *id, const char *rcpt,
	                                    enum store_outcome outcome, const char *reply,
	                                    int64_t time_ms);
	enum store_status (*track_search)(struct store *s, const struct store_filter *f,
	                                  struct store_msg_page *out);
	enum store_status (*track_get)(struct store *s, const char *id, struct store_timeline *out);
	enum store_status (*track_purge)(struct store *s, int64_t before_ms, unsigned max_rows,
	                                 size_t *n);
	enum store_status (*track_hourly)(struct store *s, int64_t since_ms,
	                                  int (*fn)(void *arg, int64_t hour_ms,
	                                            enum store_verdict v, uint64_t count),
	                                  void *arg);
	/* fn per symbols line of the messages store_track_threat_symbols() names */
	enum store_status (*track_threat_lines)(struct store *s, int64_t since_ms,
	                                        unsigned max_msgs,
	                                        int (*fn)(void *arg, const char *symbols),
	                                        void *arg);
	enum store_status (*track_threat_senders)(
	        struct store *s, int64_t since_ms, unsigned max_msgs, unsigned limit,
	        int (*fn)(void *arg, const char *sender, uint64_t count), void *arg);

	enum store_status (*quarantine_add)(struct store *s, const struct store_quar_in *in);
	enum store_status (*quarantine_search)(struct store *s, const struct store_filter *f,
	                                       struct store_quar_page *out);
	enum store_status (*quarantine_get)(struct store *s, const char *id,
	                                    struct store_quar *out);
	enum store_status (*quarantine_set_state)(struct store *s, const char *id,
	                                          enum store_qstate to, const char *who,
	                                          int64_t time_ms, enum store_qstate *was);
	enum store_status (*quarantine_queued)(struct store *s, const char *id);
	enum store_status (*quarantine_purge)(struct store *s, int64_t before_ms, unsigned max_rows,
	                                      size_t *n);
	enum store_status (*quarantine_unrelease)(struct store *s, const char *id, const char *who,
	                                          int64_t time_ms);
	enum store_status (*quarantine_expired)(struct store *s, int64_t before_ms,
	                                        char (*ids)[STORE_ID_MAX + 1], size_t max,
	                                        size_t *n);

	enum store_status (*audit_add)(struct store *s, const struct store_audit *a);
	enum store_status (*audit_list)(struct store *s, const char *target, int64_t before_id,
	                                unsigned limit,
	                                int (*fn)(void *arg, const struct store_audit *a),
	                                void *arg);

	enum store_status (*setting_set)(struct store *s, const char *key, const char *value);
	enum store_status (*setting_get)(struct store *s, const char *key, char *value,
	                                 size_t size);
	enum store_status (*setting_delete)(struct store *s, const char *key);
	enum store_status (*setting_list)(struct store *s,
	                                  int (*fn)(void *arg, const char *key, const char *value),
	                                  void *arg);

	enum store_status (*rule_put)(struct store *s, const struct rule_spec *spec);
	enum store_status (*rule_delete)(struct store *s, const char *name);
	enum store_status (*rule_load)(struct store *s,
	                               int (*fn)(void *arg, const struct rule_spec *spec),
	                               void *arg);

	enum store_status (*domain_put)(struct store *s, const struct store_domain *d);
	enum store_status (*domain_delete)(struct store *s, const char *name);
	enum store_status (*domain_load)(struct store *s,
	                                 int (*fn)(void *arg, const struct store_domain *d),
	                                 void *arg);
	enum store_status (*list_add)(struct store *s, const struct store_list_entry *e);
	enum store_status (*list_delete)(struct store *s, const char *scope,
	                                 enum store_list_kind kind, const char *pattern);
	enum store_status (*list_load)(struct store *s, const char *scope,
	                               int (*fn)(void *arg, const struct store_list_entry *e),
	                               void *arg);

	enum store_status (*m365_job_put)(struct store *s, const struct store_m365_job *j);
	enum store_status (*m365_job_get)(struct store *s, const char *id,
	                                  int (*fn)(void *arg, const struct store_m365_job *j),
	                                  void *arg);
	enum store_status (*m365_job_list)(struct store *s, unsigned limit,
	                                   int (*fn)(void *arg, const struct store_m365_job *j),
	                                   void *arg);
	enum store_status (*m365_step_add)(struct store *s, const char *job, unsigned seq,
	                                   int64_t time_ms, const char *data);
	enum store_status (*m365_step_list)(struct store *s, const char *job,
	                                    int (*fn)(void *arg, unsigned seq, int64_t time_ms,
	                                              const char *data),
	                                    void *arg);
	enum store_status (*m365_change_add)(struct store *s, const char *tenant, const char *job,
	                                     int64_t time_ms, const char *undo);
	enum store_status (*m365_change_list)(struct store *s, const char *tenant,
	                                      int (*fn)(void *arg, int64_t id, const char *undo),
	                                      void *arg);
	enum store_status (*m365_change_undone)(struct store *s, int64_t id, int64_t time_ms);

	enum store_status (*user_add)(struct store *s, const struct store_user *u);
	enum store_status (*user_get)(struct store *s, const char *name, struct store_user *out);
	enum store_status (*user_set_hash)(struct store *s, const char *name, const char *hash);
	enum store_status (*user_delete)(struct store *s, const char *name);
	enum store_status (*user_list)(struct store *s,
	                               int (*fn)(void *arg, const struct store_user *u), void *arg);

	enum store_status (*token_add)(struct store *s, const struct store_token *t);
	enum store_status (*token_find)(struct store *s, const unsigned char *hash,
	                                struct store_token *out);
	enum store_status (*token_touch)(struct store *s, const char *id, int64_t time_ms);
	enum store_status (*token_delete)(struct store *s, const char *id);
	enum store_status (*token_list)(struct store *s,
	                                int (*fn)(void *arg, const struct store_token *t),
	                                void *arg);
};

struct store {
	const struct store_backend *be;
	void *db; /* the backend's connection */
	char err[STORE_ERR_MAX];
};

extern const struct store_backend store_backend_sqlite;

/* Record the message of a STORE_ERROR; returns STORE_ERROR. */
enum store_status store_fail(struct store *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The domain of an address ("" for "" or no '@'), a pointer into addr. */
const char *store_addr_domain(const char *addr);

#endif

/*
 * config.h - moatd's process settings, declared once.
 *
 * CONFIG_OPTIONS below is the only place a setting is declared: its name,
 * type, default, bounds and documentation. The struct config fields, the
 * parser's table and docs/CONFIG.md (`moatd --options`) all come from it.
 *
 * The file is `key = value` lines, `#` comments, `[domain NAME]`
 * sections that declare protected domains and `[rule NAME]` sections that
 * declare administrator rules (priority, enabled, stop, and repeatable
 * `if`, `unless` and `then` lines in the grammar of src/policy/rules.h).
 * Domains and rules in the file are a seed: policy (domains, recipients,
 * routes, rules) is read through src/policy/, which will take it from the
 * store once the store exists, so nothing else in moat reads
 * config->domains or config->rules.
 *
 * A struct config is immutable once loaded and reference counted: SIGHUP
 * loads a new one and swaps it in; sessions keep the one they started with
 * until they end.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"
#include "route.h"

#define CONFIG_LISTEN_MAX 16

struct config_listen {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64]; /* as written: "127.0.0.1:2525", "[::1]:25" */
};

struct config_listen_list {
	size_t n;
	struct config_listen addr[CONFIG_LISTEN_MAX];
};

/* Types: C type of the field and how the value is parsed. */
#define CONFIG_CT_STRING    char *
#define CONFIG_CT_PATH      char *
#define CONFIG_CT_BOOL      bool
#define CONFIG_CT_UINT      uint64_t
#define CONFIG_CT_SIZE      uint64_t
#define CONFIG_CT_DURATION  uint64_t /* milliseconds */
#define CONFIG_CT_LISTEN    struct config_listen_list
#define CONFIG_CT_LOGLEVEL  enum log_level
#define CONFIG_CT_LOGTARGET enum log_target
#define CONFIG_CT_SCORE     double

/*
 * X(name, TYPE, default, min, max, doc). min/max bound UINT, SIZE and
 * DURATION values (in bytes / milliseconds) and are ignored otherwise.
 */
#define CONFIG_OPTIONS(X)                                                                          \
	X(hostname, STRING, "", 0, 0,                                                              \
	  "Name moatd uses in its greeting, EHLO reply and Received header. Empty: the host "      \
	  "name.")                                                                                 \
	X(smtp_listen, LISTEN, "127.0.0.1:2525", 0, 0,                                             \
	  "SMTP listening addresses, comma separated: 127.0.0.1:25, [::1]:25, 0.0.0.0:25, "        \
	  "[::]:25.")                                                                              \
	X(data_dir, PATH, "/var/lib/moat", 0, 0,                                                   \
	  "Directory for the spool (incoming/, queue/, corrupt/) and local Maildirs (maildir/).")  \
	X(user, STRING, "moat", 0, 0,                                                              \
	  "Unprivileged user moatd switches to after binding, when started as root.")              \
	X(log_level, LOGLEVEL, "info", 0, 0, "error, warn, info or debug.")                        \
	X(log_target, LOGTARGET, "stderr", 0, 0, "stderr or syslog (facility mail).")              \
	X(tls_cert, PATH, "", 0, 0,                                                                \
	  "PEM certificate chain for STARTTLS. Empty: STARTTLS is not offered. Reloaded on "       \
	  "SIGHUP.")                                                                               \
	X(tls_key, PATH, "", 0, 0, "PEM private key for tls_cert.")                                \
	X(tls_ciphers, STRING, "HIGH:!aNULL:!MD5:!RC4:!3DES", 0, 0,                                \
	  "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults).")              \
	X(smtp_max_message_size, SIZE, "50M", 1024, 2147483647,                                    \
	  "Largest message accepted, advertised in EHLO SIZE. Over it: 552 5.3.4.")                \
	X(smtp_max_recipients, UINT, "1000", 1, 10000,                                             \
	  "Recipients per message. Over it: 452 4.5.3 (RFC 5321 4.5.3.1.10).")                     \
	X(smtp_max_header_size, SIZE, "256k", 1024, 4194304,                                       \
	  "Size of the header block. Over it: 552 5.3.4.")                                         \
	X(smtp_max_line_length, UINT, "1000", 1000, 1048576,                                       \
	  "Longest text line in message data, octets incl. CRLF (RFC 5321 4.5.3.1.6). Over it: "   \
	  "500 5.5.2.")                                                                            \
	X(smtp_max_received, UINT, "50", 1, 1000,                                                  \
	  "Received header fields a message may carry. Over it: 554 5.4.6 (mail loop).")           \
	X(smtp_max_sessions, UINT, "1000", 1, 1000000,                                             \
	  "Concurrent SMTP sessions in total. Over it: 421 4.7.0 at connect.")                     \
	X(smtp_max_sessions_per_ip, UINT, "50", 1, 1000000,                                        \
	  "Concurrent SMTP sessions from one client address. Over it: 421 4.7.0 at connect.")      \
	X(smtp_max_errors, UINT, "20", 1, 10000,                                                   \
	  "Error replies in one session before moatd says 421 4.7.0 and disconnects.")             \
	X(smtp_greeting_delay, DURATION, "1s", 0, 60000,                                           \
	  "Wait before the 220 greeting; a client that talks first is dropped (554 5.5.0).")       \
	X(smtp_command_timeout, DURATION, "5m", 1000, 86400000,                                    \
	  "Time for a client to send a whole command (RFC 5321 4.5.3.2.7: at least 5 minutes).")   \
	X(smtp_data_timeout, DURATION, "3m", 1000, 86400000,                                       \
	  "Time without any data octets during DATA/BDAT (RFC 5321 4.5.3.2.5 data block).")        \
	X(smtp_min_data_rate, UINT, "500", 0, 1073741824,                                          \
	  "Bytes/s a DATA/BDAT transfer must average once it has run smtp_min_data_rate_after; "   \
	  "0 disables. Slower: 421 4.4.2.")                                                        \
	X(smtp_min_data_rate_after, DURATION, "30s", 0, 3600000,                                   \
	  "How long a DATA/BDAT transfer may run before smtp_min_data_rate is enforced.")          \
	X(smtp_shutdown_timeout, DURATION, "30s", 0, 3600000,                                      \
	  "On SIGTERM, how long transactions in progress may take to finish before moatd exits.")  \
	X(spool_min_free, SIZE, "100M", 0, UINT64_MAX / 2,                                         \
	  "Free space the spool file system must keep; below it MAIL gets 452 4.3.1.")             \
	X(control_socket, PATH, "", 0, 0,                                                          \
	  "Unix socket of moatctl (owner only). Empty: data_dir/control.sock.")                    \
	X(spool_writers, UINT, "16", 1, 64,                                                        \
	  "Threads that write and sync accepted messages in parallel (group commit).")             \
	X(delivery_paused, BOOL, "no", 0, 0,                                                       \
	  "Accept and queue mail but deliver nothing (maintenance; benchmarks).")                  \
	X(delivery_default_route, STRING, "mx", 0, 0,                                              \
	  "Route for domains moat does not protect (delivery reports to outside senders): mx or "  \
	  "smtp:[host]:port,...")                                                                  \
	X(delivery_default_tls, STRING, "opportunistic", 0, 0,                                     \
	  "TLS policy of delivery_default_route: none, opportunistic, required or verify.")        \
	X(delivery_retry_min, DURATION, "1m", 1000, 86400000,                                      \
	  "First retry after a temporary failure; each further retry waits twice as long.")        \
	X(delivery_retry_max, DURATION, "1h", 1000, 604800000,                                     \
	  "Longest wait between two retries.")                                                     \
	X(delivery_queue_lifetime, DURATION, "5d", 1000, 31536000000,                              \
	  "A recipient still undelivered this long after arrival fails with 4.4.7 and a DSN.")     \
	X(delivery_delay_warning, DURATION, "0", 0, 31536000000,                                   \
	  "Send a 'delayed' DSN once a recipient has waited this long; 0: never.")                 \
	X(delivery_max_connections, UINT, "100", 1, 10000, "Outbound SMTP connections in total.")  \
	X(delivery_max_connections_per_dest, UINT, "10", 1, 1000,                                  \
	  "Outbound SMTP connections to one destination (route, or MX domain).")                   \
	X(delivery_session_max_messages, UINT, "100", 1, 100000,                                   \
	  "Messages sent over one connection before moat closes it and opens a new one.")          \
	X(delivery_session_max_age, DURATION, "10m", 1000, 86400000,                               \
	  "Age after which a connection takes no new message (Exchange Online ends sessions "      \
	  "after about 20 minutes).")                                                              \
	X(delivery_idle_keep, DURATION, "2s", 0, 3600000,                                          \
	  "How long an idle connection waits for another message to the same destination.")        \
	X(delivery_connect_timeout, DURATION, "30s", 100, 600000,                                  \
	  "Time to connect and get the 220 greeting.")                                             \
	X(delivery_command_timeout, DURATION, "5m", 100, 3600000,                                  \
	  "Time for each reply of the downstream (RFC 5321 4.5.3.2: 5 min for MAIL and RCPT).")    \
	X(delivery_data_timeout, DURATION, "10m", 100, 3600000,                                    \
	  "Time for the reply after the message data (RFC 5321 4.5.3.2.6: 10 min).")               \
	X(delivery_rcpts_per_transaction, UINT, "100", 1, 1000,                                    \
	  "Recipients sent in one transaction (RFC 5321 4.5.3.1.8 guarantees 100).")               \
	X(delivery_mx_port, UINT, "25", 1, 65535,                                                  \
	  "Port of MX hosts (25; another value only for test setups).")                            \
	X(dns_resolver, STRING, "", 0, 0,                                                          \
	  "DNS server for every lookup, IP[@PORT]; empty: the servers in /etc/resolv.conf.")       \
	X(dns_timeout, DURATION, "5s", 100, 60000,                                                 \
	  "Bound on each DNS lookup; a timeout is a temporary failure, never a hard one.")         \
	X(delivery_dsn_max_original, SIZE, "100k", 0, 1073741824,                                  \
	  "A DSN returns the whole message up to this size, the headers only above it.")           \
	X(scan, BOOL, "yes", 0, 0,                                                                 \
	  "Scan every message before the final reply (docs/SCAN.md). no: accept and deliver "      \
	  "unscanned (a trusted internal relay, benchmarks).")                                     \
	X(scan_workers, UINT, "0", 0, 256,                                                         \
	  "Threads that scan messages in parallel; 0: one per CPU.")                               \
	X(scan_timeout, DURATION, "2m", 1000, 3600000,                                             \
	  "Deadline to scan one message; past it the reply is 451 4.7.1 (never unscanned "         \
	  "delivery).")                                                                            \
	X(authserv_id, STRING, "", 0, 0,                                                           \
	  "authserv-id of moat's Authentication-Results (RFC 8601); incoming fields claiming it "  \
	  "are removed. Empty: hostname.")                                                         \
	X(scan_trusted_relays, STRING, "", 0, 0,                                                   \
	  "Relay mode: client networks (CIDR, comma separated) whose Received fields are "         \
	  "trusted; SPF, DNSBL and HELO checks use the last hop before them.")                     \
	X(scan_quarantine_score, SCORE, "6", 0, 0,                                                 \
	  "Score at which a message is quarantined (a [domain] may set quarantine_score).")        \
	X(scan_reject_score, SCORE, "15", 0, 0,                                                    \
	  "Score at which a message is rejected with 550 5.7.1 (a [domain] may set "               \
	  "reject_score).")                                                                        \
	X(scan_malware_action, STRING, "quarantine", 0, 0,                                         \
	  "What malware found by clamd does: quarantine or reject.")                               \
	X(scan_allow_senders, STRING, "", 0, 0,                                                    \
	  "Senders delivered whatever their score (not past malware): addresses or @domain, "      \
	  "comma separated. A [domain] may add allow_senders.")                                    \
	X(scan_block_senders, STRING, "", 0, 0,                                                    \
	  "Senders rejected: addresses or @domain, comma separated. A [domain] may add "           \
	  "block_senders.")                                                                        \
	X(scan_mime_max_depth, UINT, "20", 2, 100,                                                 \
	  "MIME nesting a message may have; deeper: quarantined (MIME_NESTING_OVERFLOW).")         \
	X(scan_mime_max_parts, UINT, "500", 1, 100000,                                             \
	  "MIME parts scanned; more: quarantined (MIME_TOO_MANY_PARTS).")                          \
	X(scan_blocked_extensions, STRING,                                                         \
	  "ade,adp,app,appx,appxbundle,application,asp,bas,bat,cab,cer,chm,cmd,cnt,com,cpl,crt,"   \
	  "csh,der,diagcab,dll,exe,fxp,gadget,grp,hlp,hpj,hta,htc,inf,ins,iso,img,isp,its,jar,"    \
	  "jnlp,js,jse,ksh,lnk,mad,maf,mag,mam,maq,mar,mas,mat,mau,mav,maw,mcf,mda,mdb,mde,mdt,"   \
	  "mdw,mdz,msc,msh,msh1,msh2,mshxml,msh1xml,msh2xml,msi,msix,msixbundle,msp,mst,msu,"      \
	  "ops,osd,pcd,pif,pl,plg,prf,prg,printerexport,ps1,ps1xml,ps2,ps2xml,psc1,psc2,psd1,"     \
	  "psdm1,pst,py,pyc,pyo,pyw,pyz,pyzw,reg,scf,scr,sct,settingcontent-ms,shb,shs,theme,"     \
	  "tmp,url,vb,vbe,vbp,vbs,vhd,vhdx,vsmacros,vsw,webpnp,website,ws,wsb,wsc,wsf,wsh,xbap,"   \
	  "xll,xnk",                                                                               \
	  0, 0,                                                                                    \
	  "Attachment extensions quarantined, also inside archives and behind a second "           \
	  "extension (Microsoft 365's common attachment filter list plus script types).")          \
	X(scan_archive_max_depth, UINT, "3", 1, 20,                                                \
	  "Archives inside archives opened; deeper: quarantined (ARCHIVE_NESTING).")               \
	X(scan_archive_max_files, UINT, "1000", 1, 1000000,                                        \
	  "Entries an archive may hold; more: quarantined (ARCHIVE_TOO_MANY_FILES).")              \
	X(scan_archive_max_ratio, UINT, "100", 2, 100000,                                          \
	  "Expanded size over compressed size an archive may reach (ARCHIVE_BOMB).")               \
	X(scan_archive_max_size, SIZE, "200M", 1024, 17179869184,                                  \
	  "Expanded size an archive may reach (ARCHIVE_BOMB).")                                    \
	X(clamd, STRING, "", 0, 0,                                                                 \
	  "clamd to scan with INSTREAM: unix:/run/clamav/clamd.ctl or tcp:HOST:PORT. Empty: "      \
	  "no malware scan.")                                                                      \
	X(clamd_timeout, DURATION, "30s", 100, 600000,                                             \
	  "Time clamd has to answer; a clamd down or slower fails as below.")                      \
	X(clamd_required, BOOL, "yes", 0, 0,                                                       \
	  "When clamd is configured but unavailable: yes, 451 4.7.1 (fail closed); no, deliver "   \
	  "unscanned for malware.")                                                                \
	X(rspamd_url, STRING, "", 0, 0,                                                            \
	  "rspamd's /checkv2 URL (http://127.0.0.1:11333/checkv2); its score and symbols are "     \
	  "merged. Empty: off.")                                                                   \
	X(rspamd_timeout, DURATION, "10s", 100, 600000, "Time rspamd has to answer.")              \
	X(rspamd_required, BOOL, "no", 0, 0,                                                       \
	  "When rspamd is configured but unavailable: yes, 451 4.7.1; no, go on without it.")      \
	X(dnsbl_zones, STRING, "", 0, 0,                                                           \
	  "DNS blocklists for the client address, ZONE[:WEIGHT] comma separated "                  \
	  "(zen.spamhaus.org:4). Empty: none.")                                                    \
	X(uribl_zones, STRING, "", 0, 0,                                                           \
	  "Domain blocklists for the domains of links, ZONE[:WEIGHT] comma separated "             \
	  "(dbl.spamhaus.org:4). Empty: none.")                                                    \
	X(store, PATH, "", 0, 0,                                                                   \
	  "The store: message tracking and quarantine records, an SQLite file. Empty: "            \
	  "data_dir/moat.db.")                                                                     \
	X(relay_key_header, STRING, "X-Moat-Relay-Key", 0, 0,                                      \
	  "Header carrying the per-domain relay key on delivered mail (Exchange's bypass rule "    \
	  "requires it); removed from incoming mail.")                                             \
	X(quarantine_retention, DURATION, "30d", 1000, 3153600000000,                              \
	  "How long a held message is kept; then it expires and its file is removed.")             \
	X(tracking_retention, DURATION, "90d", 1000, 3153600000000,                                \
	  "How long message tracking records are kept, and the quarantine records of messages "    \
	  "released, deleted or expired.")                                                         \
	X(admin_listen, LISTEN, "127.0.0.1:8025", 0, 0,                                            \
	  "Admin HTTP API and portal listening addresses, comma separated. Empty: no admin "       \
	  "listener.")                                                                             \
	X(admin_tls_cert, PATH, "", 0, 0,                                                          \
	  "PEM certificate chain for HTTPS on the admin listener (session cookies are then "       \
	  "Secure). Empty: plain HTTP (keep admin_listen on loopback).")                           \
	X(admin_tls_key, PATH, "", 0, 0, "PEM private key for admin_tls_cert.")                    \
	X(admin_session_idle, DURATION, "30m", 1000, 86400000,                                     \
	  "A portal session ends after this long without a request.")                              \
	X(admin_session_max, DURATION, "12h", 1000, 604800000,                                     \
	  "A portal session ends this long after its login, however active.")                      \
	X(admin_request_max, SIZE, "1M", 1024, 67108864,                                           \
	  "Largest admin API request body; larger: 413.")                                          \
	X(portal_dir, PATH, "/usr/share/moat/portal", 0, 0,                                        \
	  "The web portal's files (index.html, app.css, js/). Empty: no portal.")                  \
	X(m365_authority, STRING, "https://login.microsoftonline.com", 0, 0,                       \
	  "Microsoft 365 sign-in authority (device-code sign-in of the Exchange wizard).")         \
	X(m365_exo_url, STRING, "https://outlook.office365.com", 0, 0,                             \
	  "Exchange Online endpoint (outlook.office365.us, outlook-dod.office365.us, "             \
	  "partner.outlook.cn for the other clouds).")                                             \
	X(m365_client_id, STRING, "fb78d390-0c51-40cd-8e17-fdbfab77341b", 0, 0,                    \
	  "Application (client) id the sign-in uses: Microsoft's Exchange Online management "      \
	  "module, or an app an MSP registered.")                                                  \
	X(m365_tenant, STRING, "", 0, 0,                                                           \
	  "The Microsoft 365 tenant (a domain or its GUID). Empty: the admin's own, from the "     \
	  "sign-in.")                                                                              \
	X(m365_egress, STRING, "", 0, 0,                                                           \
	  "The public addresses moat sends to Exchange from (IPs or CIDRs, comma separated): "     \
	  "the bypass-clutter rule and the connectors trust these.")                               \
	X(m365_host, STRING, "", 0, 0,                                                             \
	  "Relay mode: the name Exchange sends inbound mail to (smart host, TLS name). Empty: "    \
	  "hostname.")                                                                             \
	X(m365_cert_name, STRING, "", 0, 0,                                                        \
	  "The name on the certificate moat presents to Exchange; the inbound connector then "     \
	  "trusts it. Empty: the connector trusts m365_egress instead.")                           \
	X(m365_ca_file, PATH, "", 0, 0,                                                            \
	  "PEM certificates to trust for Microsoft's endpoints instead of the system's.")          \
	X(m365_timeout, DURATION, "30s", 1000, 600000,                                             \
	  "Longest wait for one answer from Microsoft.")                                           \
	X(m365_check_every, DURATION, "60s", 1000, 3600000,                                        \
	  "While changes are pending in Exchange, read them back this often.")

struct cidr_list;

struct config_domain {
	char *name; /* lower-case */
	unsigned line;
	bool any_recipient;
	char **recipients; /* local parts, compared case-insensitively */
	size_t nrecipients;
	struct route route;
	unsigned route_line;
	/* scan policy; NAN / NULL: the global setting */
	double quarantine_score, reject_score;
	char *relay_key; /* NULL: derived from the secret in data_dir */
	char *allow_senders, *block_senders;
};

/* One line of a [rule] section: the rule's text and where it was written. */
struct config_rule_line {
	char *text;
	unsigned line;
};

/* A [rule NAME] section, as text (src/policy/rules.c builds the rule). */
struct config_rule {
	char *name;
	unsigned line, priority_line;
	unsigned priority;
	bool has_priority;
	bool enabled, stop;
	struct config_rule_line *ifs, *unless, *then;
	size_t nifs, nunless, nthen;
};

struct config {
	int refs;
	char *path;
#define CONFIG_FIELD(name, type, def, min, max, doc) CONFIG_CT_##type name;
	CONFIG_OPTIONS(CONFIG_FIELD)
#undef CONFIG_FIELD
	struct config_domain *domains;
	size_t ndomains;
	struct config_rule *rules; /* in file order */
	size_t nrules;
	struct route default_route;       /* delivery_default_route + delivery_default_tls */
	struct cidr_list *trusted_relays; /* scan_trusted_relays, parsed (never NULL once loaded) */
};

/*
 * Load path. On error returns NULL and writes "path:line: message" into
 * err. Relative paths in values (data_dir, tls_cert, ...) are resolved
 * against the current directory at load time.
 */
struct config *config_load(const char *path, char *err, size_t errsize);

struct rule;
struct rule_spec;
/* The rule a [rule] section declares (src/policy/rules.h); NULL with err. */
struct rule *config_rule_build(const struct config_rule *cr, char *err, size_t errsize);
/* Its text as a struct rule_spec (pointing into cr); free with config_rule_spec_free(). */
void config_rule_spec(const struct config_rule *cr, struct rule_spec *spec);
void config_rule_spec_free(struct rule_spec *spec);

/*
 * A [domain NAME] section given as text ("key = value" lines: a domain
 * kept in the store), parsed and checked as the file's would be against
 * c; errors read "[domain NAME]:LINE: ...". allow_senders and
 * block_senders are refused (the lists live in the store). Free with
 * config_domain_clear().
 */
#define CONFIG_DOMAIN_NAME_MAX 253
int config_domain_parse(const struct config *c, const char *name, const char *body,
                        struct config_domain *out, char *err, size_t errsize);
void config_domain_clear(struct config_domain *d);

/* Defaults only, as if from an empty file (tests, moatctl). */
struct config *config_defaults(void);

struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* Print the options table as Markdown (docs/CONFIG.md). */
void config_print_options(FILE *fp);

#endif

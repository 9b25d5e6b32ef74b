/*
 * smtp_tls.h - the server TLS context for STARTTLS (RFC 3207), OpenSSL.
 */
#ifndef MOAT_SMTP_TLS_H
#define MOAT_SMTP_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

struct config;

/*
 * A server context from tls_cert/tls_key: TLS 1.2 and 1.3 only, the
 * configured TLS 1.2 ciphers, no compression, no renegotiation. Returns
 * NULL with err empty when no certificate is configured, NULL with a
 * message in err on failure.
 */
SSL_CTX *smtp_tls_ctx_new(const struct config *c, char *err, size_t errsize);

#endif

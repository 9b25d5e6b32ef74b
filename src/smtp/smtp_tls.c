/*
 * smtp_tls.c - server TLS context for STARTTLS (RFC 3207; RFC 8996: no
 * TLS before 1.2).
 */
#include "smtp_tls.h"
#include "../common/config.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

static void
smtp_tls_error(char *err, size_t errsize, const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errsize, "%s %s: %s", what, path, e ? buf : "unknown error");
	ERR_clear_error();
}

SSL_CTX *
smtp_tls_ctx_new(const struct config *c, char *err, size_t errsize)
{
	SSL_CTX *ctx;

	err[0] = '\0';
	if (c->tls_cert[0] == '\0')
		return NULL;
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		smtp_tls_error(err, errsize, "SSL_CTX_new", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_cipher_list(ctx, c->tls_ciphers) != 1) {
		smtp_tls_error(err, errsize, "tls_ciphers", c->tls_ciphers);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
		smtp_tls_error(err, errsize, "tls_cert", c->tls_cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1) {
		smtp_tls_error(err, errsize, "tls_key", c->tls_key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		smtp_tls_error(err, errsize, "tls_key does not match", c->tls_cert);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

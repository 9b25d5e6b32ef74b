/*
 * api_token.h - API tokens for scripts: minted here (by the API and by
 * `moatctl token create` on the host), stored only as a SHA-256 hash.
 *
 * A token reads "moat_" ID "_" SECRET: ID is 16 lower-case hex digits
 * (public: lists, audit entries name it), SECRET 43 base64url characters
 * (256 random bits). The store keeps the ID and the SHA-256 of the whole
 * string; the string itself is shown once.
 */
#ifndef MOAT_API_TOKEN_H
#define MOAT_API_TOKEN_H

#include <stddef.h>

#include "../store/store.h"

#define API_TOKEN_ID_LEN     16
#define API_TOKEN_SECRET_LEN 43
#define API_TOKEN_LEN        (5 + API_TOKEN_ID_LEN + 1 + API_TOKEN_SECRET_LEN)

/* "read", "operate", "admin" (comma separated) into STORE_SCOPE_* bits; -1 if unknown. */
int api_token_scopes_parse(const char *s, unsigned *scopes);
/* Bits as "read,operate" into buf. */
void api_token_scopes_str(unsigned scopes, char *buf, size_t size);
/*
 * Make a token with scopes, record its hash in the store, and write the
 * token (API_TOKEN_LEN + 1 octets) into out and its ID into id.
 */
enum store_status api_token_mint(struct store *s, unsigned scopes, int64_t now_ms,
                                 char out[API_TOKEN_LEN + 1], char id[API_TOKEN_ID_LEN + 1]);
/* The hash the store keeps for a presented token string; -1 if it is not shaped as one. */
int api_token_hash(const char *token, unsigned char hash[STORE_SHA256_LEN]);

#endif

/*
 * api_token.c - minting and hashing API tokens (api_token.h).
 */
#include "api_token.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../common/log.h"
#include "../common/util.h"

static const struct {
	const char *name;
	unsigned bit;
} scope_names[] = {
        {"read", STORE_SCOPE_READ},
        {"operate", STORE_SCOPE_OPERATE},
        {"admin", STORE_SCOPE_ADMIN},
};

int
api_token_scopes_parse(const char *s, unsigned *scopes)
{
	char buf[64];
	char *cursor = buf, *tok;

	*scopes = 0;
	if (strlen(s) >= sizeof(buf))
		return -1;
	str_copy(buf, s, sizeof(buf));
	while ((tok = strsep(&cursor, ",")) != NULL) {
		size_t i;

		for (i = 0; i < nitems(scope_names); i++)
			if (strcmp(tok, scope_names[i].name) == 0)
				break;
		if (i == nitems(scope_names))
			return -1;
		*scopes |= scope_names[i].bit;
	}
	return *scopes ? 0 : -1;
}

void
api_token_scopes_str(unsigned scopes, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < nitems(scope_names); i++)
		if (scopes & scope_names[i].bit)
			len += (size_t)snprintf(buf + len, len < size ? size - len : 0, "%s%s",
			                        len ? "," : "", scope_names[i].name);
}

static void
sha256(const void *p, size_t n, unsigned char out[STORE_SHA256_LEN])
{
	unsigned int len = STORE_SHA256_LEN;

	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
		fatalx("SHA-256 failed");
}

int
api_token_hash(const char *token, unsigned char hash[STORE_SHA256_LEN])
{
	if (strlen(token) != API_TOKEN_LEN || strncmp(token, "moat_", 5) != 0 ||
	    token[5 + API_TOKEN_ID_LEN] != '_')
		return -1;
	for (size_t i = 5; i < 5 + API_TOKEN_ID_LEN; i++)
		if (!((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
			return -1;
	sha256(token, API_TOKEN_LEN, hash);
	return 0;
}

enum store_status
api_token_mint(struct store *s, unsigned scopes, int64_t now_ms, char out[API_TOKEN_LEN + 1],
               char id[API_TOKEN_ID_LEN + 1])
{
	static const char b64url[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[API_TOKEN_ID_LEN / 2 + API_TOKEN_SECRET_LEN];
	struct store_token t;
	enum store_status st;

	for (int attempt = 0; attempt < 3; attempt++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			fatalx("no random bytes for a token");
		memcpy(out, "moat_", 5);
		for (size_t i = 0; i < API_TOKEN_ID_LEN / 2; i++) {
			id[2 * i] = hex[rnd[i] >> 4];
			id[2 * i + 1] = hex[rnd[i] & 15];
		}
		id[API_TOKEN_ID_LEN] = '\0';
		memcpy(out + 5, id, API_TOKEN_ID_LEN);
		out[5 + API_TOKEN_ID_LEN] = '_';
		/* 43 characters of 64 symbols, each from one random octet: 6 bits each, 258 bits */
		for (size_t i = 0; i < API_TOKEN_SECRET_LEN; i++)
			out[6 + API_TOKEN_ID_LEN + i] = b64url[rnd[API_TOKEN_ID_LEN / 2 + i] & 63];
		out[API_TOKEN_LEN] = '\0';
		memset(&t, 0, sizeof(t));
		str_copy(t.id, id, sizeof(t.id));
		sha256(out, API_TOKEN_LEN, t.hash);
		t.scopes = scopes;
		t.created_ms = now_ms;
		if ((st = store_token_add(s, &t)) != STORE_ALREADY)
			break;
	}
	OPENSSL_cleanse(rnd, sizeof(rnd));
	return st;
}

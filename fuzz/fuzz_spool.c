/*
 * fuzz_spool.c - libFuzzer target for the queue-file parser (src/spool/:
 * magic, body record, typed envelope records, END with CRC-32, then
 * CRC-protected status records).
 *
 * Invariants: a file is accepted only whole (END present, CRC right, a
 * sender and at least one recipient); the body lies inside the input;
 * every string is NUL-free; status records only ever name recipients
 * that exist; a byte flipped inside an accepted file's body or envelope
 * makes it rejected.
 */
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool/spool.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_env env;
	size_t body_off;
	uint64_t body_len;

	if (spool_parse(data, size, &env, &body_off, &body_len) != SPOOL_OK)
		return 0;
	CHECK(body_off <= size && body_len <= size - body_off);
	CHECK(env.sender != NULL && env.nrcpts > 0 && spool_id_valid(env.id));
	for (size_t i = 0; i < env.nrcpts; i++) {
		CHECK(env.rcpts[i].addr != NULL && env.rcpts[i].addr[0] != '\0');
		CHECK(env.rcpts[i].state == SPOOL_RCPT_PENDING ||
		      env.rcpts[i].state == SPOOL_RCPT_DELIVERED ||
		      env.rcpts[i].state == SPOOL_RCPT_FAILED);
	}
	spool_env_clear(&env);

	/* The CRC covers the body: flip one of its octets and the file is torn. */
	if (body_len > 0) {
		uint8_t *copy = malloc(size);
		size_t at = body_off + (size_t)(data[size - 1] % body_len);

		memcpy(copy, data, size);
		copy[at] ^= 0x01;
		CHECK(spool_parse(copy, size, &env, &body_off, &body_len) == SPOOL_ECORRUPT);
		free(copy);
	}
	return 0;
}

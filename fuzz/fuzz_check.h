/*
 * fuzz_check.h - what every libFuzzer target here shares: the entry point's
 * prototype and CHECK(), which aborts (a crash libFuzzer records) when an
 * invariant of the code under test does not hold.
 */
#ifndef MOAT_FUZZ_CHECK_H
#define MOAT_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "invariant failed: %s\n", #cond);                          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif

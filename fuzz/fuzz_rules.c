/*
 * fuzz_rules.c - libFuzzer target for the administrator rule grammar
 * (src/policy/rules.c): one condition, one action, and a whole rule made
 * of the input's lines (the first half conditions, the rest actions).
 *
 * Invariants: a parse either fails with a message or succeeds and frees
 * cleanly; a rule that builds has at least one action; nothing outlives
 * rule_free() (ASan's leak check).
 */
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/rules.h"

#define FUZZ_LINES_MAX 40

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *p, *q, err[512];
	const char *lines[FUZZ_LINES_MAX];
	struct rule_cond c;
	struct rule_action a;
	struct rule *r;
	size_t n = 0;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	err[0] = '\0';
	if (rule_cond_parse(s, &c, err, sizeof(err)) == 0)
		rule_cond_clear(&c);
	else
		CHECK(err[0] != '\0');
	err[0] = '\0';
	if (rule_action_parse(s, &a, err, sizeof(err)) == 0)
		rule_action_clear(&a);
	else
		CHECK(err[0] != '\0');
	for (p = s; n < FUZZ_LINES_MAX && (q = strsep(&p, "\n")) != NULL;)
		lines[n++] = q;
	struct rule_spec spec = {
	        .name = "fuzz",
	        .ifs = lines,
	        .nifs = n / 2,
	        .then = lines + n / 2,
	        .nthen = n - n / 2,
	};
	if ((r = rule_new(&spec, err, sizeof(err))) != NULL)
		CHECK(r->nacts > 0);
	rule_free(r);
	free(s);
	return 0;
}

/*
 * table.h - what the table-driven unit tests share: counting mismatches
 * row by row (so one run reports every bad row, not just the first) and
 * printing octets readably.
 */
#ifndef MOAT_TEST_TABLE_H
#define MOAT_TEST_TABLE_H

#include <stddef.h>

/* Mismatches since the last table_reset(). */
extern int table_failures;

void table_reset(void);
/* Report one mismatch of a table row ("got X, want Y") and count it. */
void table_mismatch(const char *row, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Printable form of n octets at s (\r, \n, \xHH); rotating static buffers. */
const char *table_esc(const char *s, size_t n);

#endif

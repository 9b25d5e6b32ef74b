/*
 * stats.c - the counters (see stats.h).
 */
#include "stats.h"

struct stats stats;

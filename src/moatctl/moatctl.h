/*
 * moatctl.h - what moatctl's files share.
 */
#ifndef MOAT_MOATCTL_H
#define MOAT_MOATCTL_H

#include <stdbool.h>

/* `moatctl scan ...` (moatctl_scan.c): argv after the word "scan". */
int moatctl_scan(const char *config, int argc, char **argv, bool json);

#endif

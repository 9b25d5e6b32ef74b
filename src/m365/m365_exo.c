/* m365_exo.c - filled in by issue 6. */

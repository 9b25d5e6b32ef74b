/* m365_auth.c - filled in by issue 6. */

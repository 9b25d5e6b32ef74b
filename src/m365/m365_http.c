/* m365_http.c - filled in by issue 6. */

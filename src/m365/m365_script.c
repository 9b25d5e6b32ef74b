/* m365_script.c - filled in by issue 6. */

/* m365_job.c - filled in by issue 6. */

/* m365_plan.c - filled in by issue 6. */

/*
 * m365_plan_internal.h - what m365_plan.c shares with m365_script.c and
 * nobody else: facts about the Get- kinds of m365_read_kinds[].
 */
#ifndef MOAT_M365_PLAN_INTERNAL_H
#define MOAT_M365_PLAN_INTERNAL_H

#include <stdbool.h>

/*
 * Is kind a Defender for Office 365 one (Safe Links, Safe Attachments,
 * built-in protection, the Defender presets)? Without the licence its
 * cmdlets do not exist in the admin's session at all.
 */
bool m365_kind_defender(const char *kind);

/* Is kind a rule that has a State (Enable-/Disable-) rather than a policy? */
bool m365_kind_stateful(const char *kind);

#endif

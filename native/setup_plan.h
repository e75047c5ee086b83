/*
 * A container's setup plan and the steps that build its root: shared by
 * vjail-oci-setup (an OCI container, its plan written by src/oci/plan-file.ts)
 * and vjail-init (`vjail run --rootfs`, `--net`, `--hostname`: its plan from src/isolation.ts).
 *
 * The plan is text, one directive a line, tab-separated fields, each field
 * %XX-escaped. Every step returns 0, or -1 with errno set and `why` saying
 * what failed (for the caller to report its own way).
 */
#ifndef VJAIL_SETUP_PLAN_H
#define VJAIL_SETUP_PLAN_H

#include <stddef.h>

#define PLAN_MAX_LINES 4096
#define PLAN_MAX_FIELDS 8

struct plan_line {
	char *f[PLAN_MAX_FIELDS];
	int n;
};

struct setup_plan {
	struct plan_line lines[PLAN_MAX_LINES];
	int n;
};

/* Split `text` into the plan's lines, in place (text must outlive the plan). */
void plan_parse(struct setup_plan *p, char *text);

/* The first field after `key` on its first line; "" for a bare key, NULL if absent. */
const char *plan_get(const struct setup_plan *p, const char *key);

/* Field i of a line, "" past its end. */
const char *plan_field(const struct plan_line *l, int i);

#define PLAN_EACH(p, key, l) \
	for (const struct plan_line *l = (p)->lines; l < (p)->lines + (p)->n; l++) \
		if (!strcmp(l->f[0], key))

/* CLONE_NEW* of an OCI namespace type ("mount", "network", ...); 0 if unknown. */
int plan_ns_flag(const char *type);

/*
 * Under `rootfs` (still at its host path, in a mount namespace of its own):
 * the plan's mounts, devices, /dev symlinks and the profile's kernel files
 * ("kfile"), in that order.
 */
int plan_build_root(const struct setup_plan *p, const char *rootfs, char *why, size_t size);

/* pivot_root into rootfs and detach the old root; the cwd is then the new "/". */
int plan_pivot(const char *rootfs, char *why, size_t size);

/* After pivot: masked and read-only paths, a read-only root. */
int plan_finish_root(const struct setup_plan *p, char *why, size_t size);

/* Bring the loopback interface of a new network namespace up. */
int plan_loopback_up(char *why, size_t size);

#endif

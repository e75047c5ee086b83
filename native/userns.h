/*
 * User namespaces for jails and containers started without root: the
 * caller moves into a new user namespace whose ID maps a helper process,
 * left behind in the parent namespace, writes for it (a process cannot map
 * subordinate IDs for itself: newuidmap must run outside).
 */
#ifndef VJAIL_USERNS_H
#define VJAIL_USERNS_H

#include <sys/types.h>

/* How the maps are written: by newuidmap/newgidmap (subordinate IDs from
 * /etc/subuid and /etc/subgid), or straight into /proc/PID/{uid,gid}_map
 * (root, or one line mapping the caller's own ID). */
enum idmap_writer { IDMAP_WRITE = 0, IDMAP_NEWIDMAP = 1 };

/* A map as "INSIDE:OUTSIDE:COUNT[,INSIDE:OUTSIDE:COUNT]..." (at most 340 lines, the kernel's limit). */
struct user_ns_maps {
	const char *uid_map;
	const char *gid_map;
	enum idmap_writer writer;
};

/*
 * Move the calling process into a new user namespace with these maps. On
 * return (0) it holds every capability in it. Returns an errno value, or
 * -1 when newuidmap/newgidmap refused (they say why on stderr).
 */
int enter_user_ns(const struct user_ns_maps *m);

/*
 * Raise every capability of the permitted set into the inheritable and
 * ambient sets, so that a program exec'd as a non-zero UID keeps them
 * (vjail's restorer in a namespace where the jail's user is not root).
 * Returns 0 or an errno value.
 */
int raise_ambient_caps(void);

#endif

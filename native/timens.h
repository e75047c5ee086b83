/* A time namespace for the jail's processes, so their clocks continue from a checkpoint's. */
#ifndef VJAIL_TIMENS_H
#define VJAIL_TIMENS_H

/*
 * Make the caller's future children start in a new time namespace whose
 * CLOCK_MONOTONIC and CLOCK_BOOTTIME are offset by `spec`,
 * "MONOTONIC_NS:BOOTTIME_NS" (decimal, non-negative). The caller stays in
 * its own namespace. Returns 0, or an errno value.
 */
int enter_time_ns_for_children(const char *spec);

#endif

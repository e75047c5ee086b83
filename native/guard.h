/*
 * What a checkpoint has changed in the tasks it holds, kept in vjail's memory
 * where vjail-guard reads it if vjail dies (SIGKILL) mid-checkpoint. Written
 * before each change (registers loaded, mask blocked), cleared after it is
 * undone. Shared by the addon (guard.c) and vjail-guard.c: it lives in a
 * memfd both map, so the guard can read it even once vjail is gone (the
 * kernel does not always stop a SIGKILLed tracee at PTRACE_EVENT_EXIT).
 */
#ifndef VJAIL_GUARD_H
#define VJAIL_GUARD_H

#include <stdint.h>

#define GUARD_MAGIC 0x647261756a6c6a76ULL /* "vjljuard" */
#define GUARD_MAX_TASKS 8192
#define GUARD_GPRS 27 /* struct user_regs_struct, x86_64 */

enum {
	GUARD_HELD = 1,  /* attached with ptrace */
	GUARD_DIRTY = 2, /* registers are ours; `regs` are the task's own */
	GUARD_MASK = 4,  /* every signal blocked; `mask` is the task's own */
	GUARD_RESEND = 8, /* the guard's own: a held signal to deliver again once thawed */
};

struct guard_task {
	int32_t tid;
	uint32_t flags;
	/* A signal taken from the task at its delivery stop and not yet handed back to the kernel (0: none); the task's rip it is handed back at. */
	int32_t signal;
	/*
	 * Bytes of the parking loop starting 5 bytes before `gadget` (0: the
	 * gadget has none): `mov eax, N; syscall; leave; xor...; ret` in the
	 * vDSO, N a call harmless with zeroed arguments. Our registers point rbp
	 * at a frame (GUARD_PARK_FRAME) holding its own address and the loop's
	 * start, so a task the kernel lets go with them loaded (vjail died
	 * without its exit stop) loops there, calling N, until the guard puts
	 * it back, instead of running on into code with registers not its own.
	 */
	uint32_t park;
	uint64_t signal_rip;
	uint8_t siginfo[128]; /* the signal's siginfo, as the delivery stop had it */
	uint64_t mask;
	uint64_t gadget; /* the `syscall` instruction our registers point at */
	uint64_t regs[GUARD_GPRS];
};

/* Where the parking frame (two words: its own address, the loop's start) is written: below the red zone, where a signal frame would go (memory the ABI gives the program no claim on). */
#define GUARD_PARK_FRAME(rsp) ((((uint64_t)(rsp)) - 256) & ~(uint64_t)15)

struct guard_table {
	uint64_t magic;
	int32_t cgroup_kind; /* 0 none, 1 v1 freezer, 2 v2 */
	int32_t ntasks;
	char cgroup[4096]; /* the jail's cgroup directory */
	struct guard_task tasks[GUARD_MAX_TASKS];
};

#endif

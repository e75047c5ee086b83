/*
 * The addon's side of vjail-guard: the table of changes in held tasks
 * (guard.h), which TypeScript keeps up to date through guardNote.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include "guard.h"
#include "napi_util.h"

/* The table, in a memfd vjail-guard maps too (made on first use; one per process, as the guard is). */
static struct guard_table *table_map;
static int table_fd = -1;

static int table_open(void)
{
	if (table_map)
		return 0;
	int fd = memfd_create("vjail-guard-table", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, sizeof(struct guard_table))) {
		close(fd);
		return -1;
	}
	void *m = mmap(NULL, sizeof(struct guard_table), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		close(fd);
		return -1;
	}
	table_map = m;
	table_map->magic = GUARD_MAGIC;
	table_fd = fd;
	return 0;
}

#define table (*table_map)

static struct guard_task *slot(int32_t tid)
{
	struct guard_task *free_slot = NULL;
	for (int32_t i = 0; i < table.ntasks; i++) {
		if (table.tasks[i].tid == tid)
			return &table.tasks[i];
		if (!free_slot && table.tasks[i].flags == 0)
			free_slot = &table.tasks[i];
	}
	if (free_slot) {
		memset(free_slot, 0, sizeof *free_slot);
		free_slot->tid = tid;
		return free_slot;
	}
	if (table.ntasks == GUARD_MAX_TASKS)
		return NULL;
	struct guard_task *t = &table.tasks[table.ntasks];
	memset(t, 0, sizeof *t);
	t->tid = tid;
	/* Published after the slot is filled: vjail-guard reads only when vjail is stopped, but keep it whole anyway. */
	__atomic_store_n(&table.ntasks, table.ntasks + 1, __ATOMIC_RELEASE);
	return t;
}

/* guardTableFd(): the memfd holding the table, to hand to vjail-guard. */
napi_value js_guard_table_fd(napi_env env, napi_callback_info info)
{
	(void)info;
	if (table_open())
		return vj_throw_errno(env, "the guard's table (memfd_create, mmap)", errno);
	napi_value v;
	napi_create_int32(env, table_fd, &v);
	return v;
}

/* guardCgroup(kind, path): the cgroup to freeze and thaw (kind 0: none). */
napi_value js_guard_cgroup(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	if (table_open())
		return vj_throw_errno(env, "the guard's table (memfd_create, mmap)", errno);
	size_t len = 0;
	table.cgroup[0] = 0;
	napi_get_value_string_utf8(env, argv[1], table.cgroup, sizeof table.cgroup, &len);
	table.cgroup_kind = vj_i32(env, argv[0]);
	return vj_undefined(env);
}

/* The entry of the task `tid` names, made if new; NULL, with an exception thrown, when the table is full. */
static struct guard_task *task_arg(napi_env env, napi_value tid, const char *what)
{
	if (table_open()) {
		vj_throw_errno(env, "the guard's table (memfd_create, mmap)", errno);
		return NULL;
	}
	struct guard_task *t = slot(vj_i32(env, tid));
	if (!t)
		vj_throw_errno(env, what, 28 /* ENOSPC */);
	return t;
}

/* guardSignal(tid, signal, rip): a signal vjail holds at the task's delivery stop, and its siginfo (0 when handed back). */
napi_value js_guard_signal(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	struct guard_task *t = task_arg(env, argv[0], "guardSignal (table full)");
	if (!t)
		return NULL;
	int32_t sig = vj_i32(env, argv[1]);
	t->signal_rip = vj_u64(env, argv[2]);
	/* The task is at the delivery stop (vjail, its tracer, calls this): keep the siginfo to deliver it with again. */
	if (sig && ptrace(PTRACE_GETSIGINFO, t->tid, 0L, t->siginfo))
		memset(t->siginfo, 0, sizeof t->siginfo);
	__atomic_store_n(&t->signal, sig, __ATOMIC_RELEASE);
	return vj_undefined(env);
}

/* guardTask(tid, flags, mask | null, regs | null, gadget, park): the task's entry; flags 0 forgets it. mask, regs, gadget and park count when given. */
napi_value js_guard_task(napi_env env, napi_callback_info info)
{
	napi_value argv[6];
	if (vj_args(env, info, 6, argv))
		return NULL;
	struct guard_task *t = task_arg(env, argv[0], "guardTask (table full)");
	if (!t)
		return NULL;
	uint32_t flags = (uint32_t)vj_i32(env, argv[1]);
	napi_valuetype type;
	napi_typeof(env, argv[3], &type);
	if (type != napi_null && type != napi_undefined) {
		void *data;
		size_t len;
		if (vj_buffer(env, argv[3], "the registers", &data, &len))
			return NULL;
		memcpy(t->regs, data, len < sizeof t->regs ? len : sizeof t->regs);
		t->gadget = vj_u64(env, argv[4]);
		t->park = (uint32_t)vj_i32(env, argv[5]);
	}
	napi_typeof(env, argv[2], &type);
	if (type != napi_null && type != napi_undefined)
		t->mask = vj_u64(env, argv[2]);
	if (!flags)
		t->signal = 0;
	/* Flags last: the entry never claims what it does not hold yet. */
	__atomic_store_n(&t->flags, flags, __ATOMIC_RELEASE);
	return vj_undefined(env);
}

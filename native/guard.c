/*
 * The addon's side of vjail-guard: the table of changes in held tasks
 * (guard.h), which TypeScript keeps up to date through guardNote.
 */
#include <string.h>
#include <sys/ptrace.h>

#include "guard.h"
#include "napi_util.h"

static struct guard_table table = { .magic = GUARD_MAGIC };

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

/* guardTableAddress(): where the table is, for vjail-guard's argv. */
napi_value js_guard_table_address(napi_env env, napi_callback_info info)
{
	(void)info;
	return vj_make_u64(env, (uint64_t)(uintptr_t)&table);
}

/* guardCgroup(kind, path): the cgroup to freeze and thaw (kind 0: none). */
napi_value js_guard_cgroup(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	size_t len = 0;
	table.cgroup[0] = 0;
	napi_get_value_string_utf8(env, argv[1], table.cgroup, sizeof table.cgroup, &len);
	table.cgroup_kind = vj_i32(env, argv[0]);
	return vj_undefined(env);
}

/* The entry of the task `tid` names, made if new; NULL, with an exception thrown, when the table is full. */
static struct guard_task *task_arg(napi_env env, napi_value tid, const char *what)
{
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

/* guardTask(tid, flags, mask | null, regs | null, gadget): the task's entry; flags 0 forgets it. mask, regs and gadget count when given. */
napi_value js_guard_task(napi_env env, napi_callback_info info)
{
	napi_value argv[5];
	if (vj_args(env, info, 5, argv))
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

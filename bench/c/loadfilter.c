/*
 * Load a seccomp filter, then exec a program under it. Lets the bench run
 * the same workload under no filter, under a filter vjail compiled, and
 * under libseccomp's filter for the same rules, with nothing else differing.
 *
 *   loadfilter --none -- PROGRAM [ARG...]
 *   loadfilter --bpf FILE -- PROGRAM [ARG...]       raw struct sock_filter[]
 *   loadfilter --rules FILE [--tree] -- PROGRAM...  rules for libseccomp
 *
 * Rules file, one directive a line (written by bench/rules.ts):
 *   arch x86_64|x86|x32
 *   default ACTION
 *   rule NAME ACTION [IDX:OP:VALUE[:MASK]]...
 * ACTION is allow, errno:N, kill_thread, kill_process, trap, log, trace:N or
 * notify; OP is eq, ne, lt, le, gt, ge or masked_eq (conditions AND-ed).
 * --tree asks libseccomp 2.5+ for its binary-tree layout (SCMP_FLTATR_CTL_OPTIMIZE 2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what, int err)
{
	fprintf(stderr, "loadfilter: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(127);
}

static int parse_action(const char *s, uint32_t *out)
{
	unsigned long n;
	if (!strcmp(s, "allow"))
		*out = SCMP_ACT_ALLOW;
	else if (sscanf(s, "errno:%lu", &n) == 1)
		*out = SCMP_ACT_ERRNO(n);
	else if (!strcmp(s, "kill_thread"))
		*out = SCMP_ACT_KILL_THREAD;
	else if (!strcmp(s, "kill_process"))
		*out = SCMP_ACT_KILL_PROCESS;
	else if (!strcmp(s, "trap"))
		*out = SCMP_ACT_TRAP;
	else if (!strcmp(s, "log"))
		*out = SCMP_ACT_LOG;
	else if (sscanf(s, "trace:%lu", &n) == 1)
		*out = SCMP_ACT_TRACE(n);
	else if (!strcmp(s, "notify"))
		*out = SCMP_ACT_NOTIFY;
	else
		return -1;
	return 0;
}

static int parse_cmp(char *s, struct scmp_arg_cmp *c)
{
	char op[16];
	unsigned idx;
	unsigned long long value, mask = 0;
	int n = sscanf(s, "%u:%15[a-z_]:%llu:%llu", &idx, op, &value, &mask);
	if (n < 3 || idx > 5)
		return -1;
	c->arg = idx;
	if (!strcmp(op, "masked_eq")) {
		if (n != 4)
			return -1;
		c->op = SCMP_CMP_MASKED_EQ;
		c->datum_a = mask;
		c->datum_b = value;
		return 0;
	}
	static const struct {
		const char *name;
		enum scmp_compare op;
	} ops[] = { { "eq", SCMP_CMP_EQ }, { "ne", SCMP_CMP_NE }, { "lt", SCMP_CMP_LT },
		    { "le", SCMP_CMP_LE }, { "gt", SCMP_CMP_GT }, { "ge", SCMP_CMP_GE } };
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		if (!strcmp(op, ops[i].name)) {
			c->op = ops[i].op;
			c->datum_a = value;
			c->datum_b = 0;
			return 0;
		}
	}
	return -1;
}

static void load_rules(const char *path, int tree)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die(path, errno);
	char line[4096];
	scmp_filter_ctx ctx = NULL;
	int lineno = 0, skipped = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		char *save, *tok = strtok_r(line, " \t\n", &save);
		if (!tok || tok[0] == '#')
			continue;
		if (!strcmp(tok, "default")) {
			uint32_t act;
			char *a = strtok_r(NULL, " \t\n", &save);
			if (!a || parse_action(a, &act))
				goto bad;
			ctx = seccomp_init(act);
			if (!ctx)
				die("seccomp_init", EINVAL);
			if (tree) {
				int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
				if (rc)
					die("SCMP_FLTATR_CTL_OPTIMIZE", rc);
			}
		} else if (!ctx) {
			goto bad;
		} else if (!strcmp(tok, "arch")) {
			char *a = strtok_r(NULL, " \t\n", &save);
			uint32_t arch = a ? seccomp_arch_resolve_name(a) : 0;
			if (!arch)
				goto bad;
			int rc = seccomp_arch_add(ctx, arch);
			if (rc && rc != -EEXIST)
				die("seccomp_arch_add", rc);
		} else if (!strcmp(tok, "rule")) {
			char *name = strtok_r(NULL, " \t\n", &save);
			char *a = strtok_r(NULL, " \t\n", &save);
			uint32_t act;
			if (!name || !a || parse_action(a, &act))
				goto bad;
			struct scmp_arg_cmp cmps[6];
			unsigned n = 0;
			for (char *c; (c = strtok_r(NULL, " \t\n", &save));) {
				if (n == 6 || parse_cmp(c, &cmps[n]))
					goto bad;
				n++;
			}
			int nr = seccomp_syscall_resolve_name(name);
			if (nr == __NR_SCMP_ERROR) {
				skipped++;
				continue;
			}
			/* As runc: a rule libseccomp refuses for one arch (e.g. a name only
			 * another arch has) is skipped, not fatal. */
			int rc = seccomp_rule_add_array(ctx, act, nr, n, cmps);
			if (rc)
				skipped++;
		} else {
			goto bad;
		}
	}
	fclose(f);
	if (!ctx)
		die("no default action in the rules file", EINVAL);
	if (getenv("LOADFILTER_VERBOSE"))
		fprintf(stderr, "loadfilter: %d rule(s) skipped\n", skipped);
	int rc = seccomp_load(ctx);
	if (rc)
		die("seccomp_load", rc);
	seccomp_release(ctx);
	return;
bad:
	fprintf(stderr, "loadfilter: %s:%d: cannot parse this line\n", path, lineno);
	exit(127);
}

static void load_bpf(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die(path, errno);
	static struct sock_filter insns[BPF_MAXINSNS];
	size_t n = fread(insns, sizeof insns[0], BPF_MAXINSNS, f);
	fclose(f);
	if (n == 0)
		die("empty BPF program", EINVAL);
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = insns };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		die("no_new_privs", errno);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		die("seccomp", errno);
}

int main(int argc, char **argv)
{
	const char *bpf = NULL, *rules = NULL;
	int none = 0, tree = 0, i = 1;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--none"))
			none = 1;
		else if (!strcmp(argv[i], "--tree"))
			tree = 1;
		else if (!strcmp(argv[i], "--bpf") && i + 1 < argc)
			bpf = argv[++i];
		else if (!strcmp(argv[i], "--rules") && i + 1 < argc)
			rules = argv[++i];
		else
			break;
	}
	if (i + 1 >= argc || strcmp(argv[i], "--") || none + !!bpf + !!rules != 1) {
		fprintf(stderr, "usage: loadfilter (--none | --bpf FILE | --rules FILE [--tree]) -- PROGRAM [ARG...]\n");
		return 2;
	}
	if (bpf)
		load_bpf(bpf);
	if (rules)
		load_rules(rules, tree);
	execvp(argv[i + 1], argv + i + 1);
	die("exec", errno);
	return 127;
}

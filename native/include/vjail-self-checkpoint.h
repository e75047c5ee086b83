/*
 * vjail-self-checkpoint.h: a jailed program asks for a checkpoint of its own
 * jail (docs/SELF-CHECKPOINT.md). Header only, libc only, no allocation.
 *
 *   char why[200];
 *   switch (vjail_self_checkpoint("/var/lib/app/image", VJAIL_SELF_LEAVE_RUNNING, why, sizeof why)) {
 *   case VJAIL_SELF_CHECKPOINTED: ... the image is written, we go on ...
 *   case VJAIL_SELF_RESTORED:     ... we are the restored copy ...
 *   default:                      ... failed: why says so; nothing changed ...
 *   }
 *
 * How it works: the supervisor (the `vjail run` or `vjail restore` process
 * of this jail) listens on the abstract unix socket named in the
 * VJAIL_SELF_CHECKPOINT environment variable ("@name": sun_path is a NUL,
 * the name, and NULs to its end). The request is one
 * line, "checkpoint run|exit ADDR IMAGE\n", ADDR being the address of a
 * struct vjail_self_answer in this process, its state 0. The supervisor
 * answers "ok\n" (the checkpoint will start) or "error WHY\n". After "ok"
 * this process closes the socket (so no descriptor to the outside is in the
 * image) and waits on the state word with a futex. The supervisor writes
 * RESTORED into it while every task of the jail is stopped, before memory is
 * saved: that is what the image holds, and what a restored copy finds. Then
 * CHECKPOINTED (or FAILED and why) before letting the jail go on.
 */
#ifndef VJAIL_SELF_CHECKPOINT_H
#define VJAIL_SELF_CHECKPOINT_H

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define VJAIL_SELF_ENV "VJAIL_SELF_CHECKPOINT"

enum vjail_self_mode { VJAIL_SELF_LEAVE_RUNNING = 0, VJAIL_SELF_EXIT = 1 };

enum vjail_self_result {
	VJAIL_SELF_FAILED = -1,
	VJAIL_SELF_CHECKPOINTED = 0, /* the image is written; this is the jail that went on */
	VJAIL_SELF_RESTORED = 1,     /* this is a copy restored from the image */
};

/* Written by the supervisor; the layout is part of the protocol. */
struct vjail_self_answer {
	volatile int32_t state; /* 0 pending, 1 checkpointed, 2 restored, 3 failed */
	int32_t reserved;
	char message[248]; /* with state 3: why, one line, NUL-terminated */
};

static inline void vjail_self_say(char *why, size_t len, const char *what, const char *detail)
{
	if (why && len && snprintf(why, len, "%s%s%s", what, detail ? ": " : "", detail ? detail : "") >= (int)len)
		why[len - 1] = 0; /* truncated: still one line */
}

/*
 * Checkpoint this jail into the directory `image` (which must not exist;
 * relative to this process's working directory). With VJAIL_SELF_EXIT the
 * jail is ended once the image is written, and this call returns only in a
 * restored copy, or on failure. On failure, `why` (if given) gets one line.
 */
static inline int vjail_self_checkpoint(const char *image, enum vjail_self_mode mode, char *why, size_t why_len)
{
	static struct vjail_self_answer answer;
	const char *address = getenv(VJAIL_SELF_ENV);
	if (!address || address[0] != '@' || strlen(address) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		vjail_self_say(why, why_len, "not in a vjail jail that accepts checkpoint requests", VJAIL_SELF_ENV " is not set");
		return VJAIL_SELF_FAILED;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(address);
	/* Abstract: a leading NUL, the name, NUL padding to the end of sun_path
	 * (the whole of it is the name, as Node binds it). */
	memcpy(sa.sun_path + 1, address + 1, n - 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		vjail_self_say(why, why_len, "cannot reach the jail's supervisor", strerror(errno));
		if (fd >= 0)
			close(fd);
		return VJAIL_SELF_FAILED;
	}
	answer.state = 0;
	answer.message[0] = 0;
	char req[4200];
	int len = snprintf(req, sizeof req, "checkpoint %s %lx %s\n", mode == VJAIL_SELF_EXIT ? "exit" : "run", (unsigned long)(uintptr_t)&answer, image);
	if (len < 0 || (size_t)len >= sizeof req || strchr(image, '\n')) {
		close(fd);
		vjail_self_say(why, why_len, "the image path is too long or has a newline", NULL);
		return VJAIL_SELF_FAILED;
	}
	for (int off = 0; off < len;) {
		ssize_t w = write(fd, req + off, (size_t)(len - off));
		if (w <= 0 && errno != EINTR) {
			vjail_self_say(why, why_len, "cannot send the request", strerror(errno));
			close(fd);
			return VJAIL_SELF_FAILED;
		}
		off += w > 0 ? (int)w : 0;
	}
	char reply[300];
	size_t got = 0;
	while (got < sizeof reply - 1 && !memchr(reply, '\n', got)) {
		ssize_t r = read(fd, reply + got, sizeof reply - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	reply[got] = 0;
	close(fd); /* before the checkpoint: the image must not hold a descriptor to the supervisor */
	if (strncmp(reply, "ok\n", 3) != 0) {
		char *nl = strchr(reply, '\n');
		if (nl)
			*nl = 0;
		vjail_self_say(why, why_len, "refused", strncmp(reply, "error ", 6) == 0 ? reply + 6 : "no answer from the supervisor");
		return VJAIL_SELF_FAILED;
	}
	/* The timeout only bounds each wait: the supervisor writes the state
	 * while this thread is stopped, so a wait restarted after that returns
	 * at once. */
	while (answer.state == 0) {
		struct timespec ts = { 1, 0 };
		syscall(SYS_futex, &answer.state, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
	}
	switch (answer.state) {
	case 1:
		return VJAIL_SELF_CHECKPOINTED;
	case 2:
		return VJAIL_SELF_RESTORED;
	default:
		answer.message[sizeof answer.message - 1] = 0;
		vjail_self_say(why, why_len, "checkpoint failed", answer.message);
		return VJAIL_SELF_FAILED;
	}
}

#endif

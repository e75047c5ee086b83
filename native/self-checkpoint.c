/*
 * vjail-self-checkpoint: the command form of vjail-self-checkpoint.h, for
 * scripts run inside a jail (docs/SELF-CHECKPOINT.md).
 *
 * usage: vjail-self-checkpoint --image DIR [--exit]
 *
 * Exit status: 0 the image is written and this is the jail that went on;
 * 3 this is a copy restored from the image; 1 the checkpoint failed (why on
 * stderr; nothing changed); 2 usage. It is small and static so that it is
 * an ordinary process of the checkpoint, holding no descriptor but 0-2.
 */
#include <stdio.h>
#include <string.h>

#include "include/vjail-self-checkpoint.h"

int main(int argc, char **argv)
{
	const char *image = NULL;
	enum vjail_self_mode mode = VJAIL_SELF_LEAVE_RUNNING;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--image") == 0 && i + 1 < argc)
			image = argv[++i];
		else if (strncmp(argv[i], "--image=", 8) == 0)
			image = argv[i] + 8;
		else if (strcmp(argv[i], "--exit") == 0)
			mode = VJAIL_SELF_EXIT;
		else
			image = NULL, i = argc;
	}
	if (!image) {
		fprintf(stderr, "usage: vjail-self-checkpoint --image DIR [--exit]\n");
		return 2;
	}
	char why[300];
	switch (vjail_self_checkpoint(image, mode, why, sizeof why)) {
	case VJAIL_SELF_CHECKPOINTED:
		return 0;
	case VJAIL_SELF_RESTORED:
		return 3;
	default:
		fprintf(stderr, "vjail-self-checkpoint: %s\n", why);
		return 1;
	}
}

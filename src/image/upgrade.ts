/**
 * Older image versions, read and turned into the current shape. Each old
 * schema is the current one less what its version lacked; each upgrade fills
 * what is missing with what the lack meant (no files, no clocks, ...).
 *
 *   8  a page file's chunk digests are in a file of their own beside it, not in the manifest
 *      (the schema reads both; OpenedImage gives them either way: read.ts chunkSums)
 *   7  a page file's chunk digests are one string, not a list (the schema reads both and
 *      gives the string)
 *   6  a page file's sha256 is of its chunk digests, not of its bytes (the manifest is
 *      otherwise version 5's; readers tell the two by the version on disk)
 *   5  every descriptor (0-2 too) pointing at open file descriptions of many kinds (pipes,
 *      eventfds, devices, ...), with pipe contents and other bytes in blobs; timers,
 *      credentials, thread names, memory advice, prctl flags; see docs/IMAGE.md
 *   4  open regular files and directories above fd 2
 *   3  what restoring on another kernel or CPU needs: vDSO symbols, clocks, CPU features
 *   2  a process tree: threads, zombies, sessions and groups
 *   1  one single-threaded process
 */
import { z } from 'zod';
import {
  base64, type Description, type FdImage, hex, IMAGE_MAGIC, IMAGE_VERSION, jailFields, liveProcessSchema, type Manifest, manifestSchema,
  mappingSchema, openFileSchema, registersSchema, rseqSchema, sigactionSchema, taskFields, threadSchema, zombieSchema,
} from './schema.js';

/** Version 1: one single-threaded process, restored with a new PID. */
const manifestV1Schema = z.strictObject({
  format: z.literal(IMAGE_MAGIC),
  version: z.literal(1),
  ...jailFields,
  process: z.strictObject({
    pid: z.number().int().positive(),
    ...taskFields,
    registers: registersSchema,
    signals: z.strictObject({
      blocked: hex,
      actions: z.array(sigactionSchema),
      /** Queued siginfo_t (128 bytes each, base64), per-thread and process-wide. */
      pending: z.array(z.strictObject({ shared: z.boolean(), siginfo: base64 })),
    }),
    rseq: rseqSchema,
    robustList: z.strictObject({ head: hex, length: hex }),
    clearChildTid: hex,
    mappings: z.array(mappingSchema).min(1),
  }),
});

/** A live process as versions 2 to 4 saved it (less `files`, which version 4 adds). */
const threadV4Schema = threadSchema.omit({ comm: true, pdeathsig: true, timerSlack: true, creds: true });
const liveProcessV4Schema = liveProcessSchema.omit({ fds: true, timers: true, advice: true, prctl: true }).extend({ threads: z.array(threadV4Schema).min(1) });

/**
 * Version 4: the shape version 5 grew from. Fields version 5 adds are
 * filled here with what their absence meant.
 */
const manifestV4Schema = manifestSchema.omit({ version: true, descriptions: true, pipes: true, blobs: true, external: true, sharedMemory: true, sysvIpc: true, tcpEstablished: true, policyText: true, userNamespace: true, configUserNamespace: true }).extend({
  version: z.literal(4),
  processes: z.array(z.discriminatedUnion('state', [liveProcessV4Schema.extend({ files: z.array(openFileSchema) }), zombieSchema])).min(1),
});

/**
 * Version 4 saved regular files and directories above fd 2, each process
 * its own description, and restored 0-2 as the restoring side's. It had
 * no timers or memory advice; credentials, prctl flags and timer slack
 * were left as the restorer's (null), the parent-death signal 0; the
 * leader's name is the process's.
 */
function upgradeV4(m: z.infer<typeof manifestV4Schema>): Manifest {
  const descriptions: Description[] = [0, 1, 2].map((stream) => ({ kind: 'stdio', id: stream, flags: 0, stream, what: 'file' }));
  const processes = m.processes.map((p) => {
    if (p.state !== 'live') return p;
    const { files, ...rest } = p;
    const fds: FdImage[] = [0, 1, 2].map((fd) => ({ fd, cloexec: false, description: fd }));
    for (const f of files) {
      const id = descriptions.length;
      descriptions.push({ kind: 'file', id, flags: f.flags, path: f.path, type: f.kind, pos: f.pos });
      fds.push({ fd: f.fd, cloexec: f.cloexec, description: id });
    }
    const threads = rest.threads.map((t, i) => ({ ...t, comm: i === 0 ? rest.comm : null, pdeathsig: 0, timerSlack: null, creds: null }));
    return { ...rest, threads, fds, timers: { itimers: [], posix: [] }, advice: [], prctl: null };
  });
  // Shared anonymous mappings held their own pages; no System V objects were saved.
  // Only the policy's path was kept.
  return { ...m, version: IMAGE_VERSION, processes, descriptions, pipes: [], blobs: [], external: [], sharedMemory: [], sysvIpc: null, tcpEstablished: false, policyText: null, userNamespace: null, configUserNamespace: null };
}

/**
 * Version 5: the current shape; only what its page files' sha256 are of
 * differs (their bytes), which readers tell by OpenedImage.version.
 */
const manifestV5Schema = manifestSchema.omit({ version: true }).extend({ version: z.literal(5) });

/** Version 6: the current shape, its chunk digests a list (read as one string, as version 7 writes them). */
const manifestV6Schema = manifestSchema.omit({ version: true }).extend({ version: z.literal(6) });

/** Version 7: the current shape, its chunk digests one string in the manifest (not a file of their own). */
const manifestV7Schema = manifestSchema.omit({ version: true }).extend({ version: z.literal(7) });

/** Version 3: the same, without open files. */
const manifestV3Schema = manifestV4Schema.omit({ version: true }).extend({
  version: z.literal(3),
  processes: z.array(z.discriminatedUnion('state', [liveProcessV4Schema, zombieSchema])).min(1),
});

function upgradeV3(m: z.infer<typeof manifestV3Schema>): Manifest {
  return upgradeV4({ ...m, version: 4, processes: m.processes.map((p) => (p.state === 'live' ? { ...p, files: [] } : p)) });
}

/** Version 2: the same tree, without vDSO symbols, clocks, CPU features or open files. */
const manifestV2Schema = manifestV4Schema.omit({ version: true, clocks: true, cpu: true }).extend({
  version: z.literal(2),
  processes: z.array(z.discriminatedUnion('state', [liveProcessV4Schema.omit({ vdso: true }), zombieSchema])).min(1),
});

function upgradeV2(m: z.infer<typeof manifestV2Schema>): Manifest {
  return upgradeV4({
    ...m,
    version: 4,
    clocks: null,
    cpu: null,
    processes: m.processes.map((p) => (p.state === 'live' ? { ...p, vdso: null, files: [] } : p)),
  });
}

/** A version 1 manifest in the current shape: one process, one thread, no PID namespace. */
function upgradeV1(m: z.infer<typeof manifestV1Schema>): Manifest {
  const { registers, signals, rseq, robustList, clearChildTid, mappings, ...task } = m.process;
  const queued = (shared: boolean): string[] => signals.pending.filter((q) => q.shared === shared).map((q) => q.siginfo);
  return upgradeV4({
    ...m,
    version: 4,
    clocks: null,
    cpu: null,
    pidNamespace: false,
    processes: [{
      state: 'live',
      ...task,
      ppid: 0,
      pgid: 0,
      sid: 0,
      signals: { actions: signals.actions, pending: queued(true) },
      threads: [{ tid: task.pid, registers, blocked: signals.blocked, pending: queued(false), rseq, robustList, clearChildTid }],
      mappings,
      vdso: null,
      files: [],
    }],
  });
}

/** Validate `json` as a manifest of `version` and return it in the current shape; the error names the first problem. */
export function parseManifest(version: number, json: unknown): { ok: true; manifest: Manifest } | { ok: false; error: z.ZodError } {
  const parse = <T>(schema: z.ZodType<T>, up: (m: T) => Manifest): { ok: true; manifest: Manifest } | { ok: false; error: z.ZodError } => {
    // Per call: zod reads its global `jitless` when a schema is made, and these were made when this module loaded.
    const r = schema.safeParse(json, { jitless: z.config().jitless });
    return r.success ? { ok: true, manifest: up(r.data) } : { ok: false, error: r.error };
  };
  switch (version) {
    case 1: return parse(manifestV1Schema, upgradeV1);
    case 2: return parse(manifestV2Schema, upgradeV2);
    case 3: return parse(manifestV3Schema, upgradeV3);
    case 4: return parse(manifestV4Schema, upgradeV4);
    case 5: return parse(manifestV5Schema, (m) => ({ ...m, version: IMAGE_VERSION }));
    case 6: return parse(manifestV6Schema, (m) => ({ ...m, version: IMAGE_VERSION }));
    case 7: return parse(manifestV7Schema, (m) => ({ ...m, version: IMAGE_VERSION }));
    default: return parse(manifestSchema, (m) => m);
  }
}

/**
 * The bundle's config.json (OCI runtime-spec), validated at entry: the parts
 * vjail-oci honours are typed; anything else is kept and ignored.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { zod } from '../zod.js';
import { OciError } from './errors.js';

function schema() {
  const z = zod();
  const u32 = z.number().int().min(0).max(0xffffffff);
  const mount = z.object({
    destination: z.string().min(1),
    type: z.string().optional(),
    source: z.string().optional(),
    options: z.array(z.string()).optional(),
  });
  const hook = z.object({ path: z.string().min(1), args: z.array(z.string()).optional(), env: z.array(z.string()).optional(), timeout: z.number().int().positive().optional() });
  const hooks = z.array(hook).optional();
  const process = z.object({
    terminal: z.boolean().optional(),
    consoleSize: z.object({ height: u32, width: u32 }).optional(),
    user: z.object({ uid: u32, gid: u32, umask: u32.optional(), additionalGids: z.array(u32).optional() }),
    args: z.array(z.string()).min(1, 'process.args is empty; give the program to run'),
    env: z.array(z.string()).optional(),
    cwd: z.string().startsWith('/', 'process.cwd must be an absolute path'),
    capabilities: z
      .object({
        bounding: z.array(z.string()).optional(),
        effective: z.array(z.string()).optional(),
        inheritable: z.array(z.string()).optional(),
        permitted: z.array(z.string()).optional(),
        ambient: z.array(z.string()).optional(),
      })
      .optional(),
    rlimits: z.array(z.object({ type: z.string().regex(/^RLIMIT_[A-Z]+$/), hard: z.number().int().min(0), soft: z.number().int().min(0) })).optional(),
    noNewPrivileges: z.boolean().optional(),
    oomScoreAdj: z.number().int().min(-1000).max(1000).optional(),
    apparmorProfile: z.string().optional(),
    selinuxLabel: z.string().optional(),
  });
  const idMap = z.object({ containerID: u32, hostID: u32, size: u32 });
  return z.looseObject({
    ociVersion: z.string(),
    process: process.optional(),
    root: z.object({ path: z.string().min(1), readonly: z.boolean().optional() }).optional(),
    hostname: z.string().optional(),
    domainname: z.string().optional(),
    mounts: z.array(mount).optional(),
    hooks: z
      .object({ prestart: hooks, createRuntime: hooks, createContainer: hooks, startContainer: hooks, poststart: hooks, poststop: hooks })
      .optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    linux: z
      .looseObject({
        namespaces: z.array(z.object({ type: z.enum(['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time']), path: z.string().optional() })).optional(),
        uidMappings: z.array(idMap).optional(),
        gidMappings: z.array(idMap).optional(),
        timeOffsets: z.record(z.string(), z.object({ secs: z.number().int().optional(), nanosecs: z.number().int().optional() })).optional(),
        devices: z
          .array(z.object({ type: z.enum(['c', 'b', 'u', 'p']), path: z.string().startsWith('/'), major: z.number().int().optional(), minor: z.number().int().optional(), fileMode: u32.optional(), uid: u32.optional(), gid: u32.optional() }))
          .optional(),
        cgroupsPath: z.string().optional(),
        resources: z
          .looseObject({
            memory: z.looseObject({ limit: z.number().int().optional(), swap: z.number().int().optional() }).optional(),
            pids: z.object({ limit: z.number().int() }).optional(),
            cpu: z.looseObject({ shares: z.number().int().optional(), quota: z.number().int().optional(), period: z.number().int().optional() }).optional(),
          })
          .optional(),
        rootfsPropagation: z.string().optional(),
        seccomp: z.unknown().optional(),
        sysctl: z.record(z.string(), z.string()).optional(),
        maskedPaths: z.array(z.string()).optional(),
        readonlyPaths: z.array(z.string()).optional(),
      })
      .optional(),
  });
}

export type OciConfig = ReturnType<ReturnType<typeof schema>['parse']>;
export type OciProcess = NonNullable<OciConfig['process']>;

/** Validate a parsed config (a bundle's, or exec's --process wrapped as one). */
export function parseConfig(json: unknown, source: string): OciConfig {
  const r = schema().safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new OciError(`${source}: ${issue.path.join('.') || '(top)'}: ${issue.message}; fix the config`);
  }
  return r.data;
}

/** The process schema alone, for `exec --process`. */
export function parseProcess(json: unknown, source: string): OciProcess {
  const cfg = parseConfig({ ociVersion: '1.0.0', process: json }, source);
  return cfg.process!;
}

export function loadConfig(bundle: string): OciConfig {
  const path = join(bundle, 'config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new OciError(`cannot read ${path}: ${(e as Error).message}; give the bundle directory with --bundle`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new OciError(`${path} is not JSON: ${(e as Error).message}`);
  }
  const cfg = parseConfig(json, path);
  if (!cfg.process) throw new OciError(`${path}: process is missing; a container needs a process to run`);
  if (!cfg.root) throw new OciError(`${path}: root is missing; give root.path, the container's root file system`);
  return cfg;
}

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { buildId, readCached, writeCached } from '../cache.js';
import { machine, release, version } from 'node:os';
import { basename } from 'node:path';
import { readUserFile } from '../input.js';
import { JsonSyntaxError, parseJsonExact } from '../policy/json.js';
import { dataPath } from '../paths.js';
import { compareKernelVersions } from '../syscalls/version.js';
import { type HostRelease, ProfileError, parseProfile, validatorFingerprint } from './schema.js';
import type { Profile } from './types.js';

export { ProfileError } from './schema.js';
export type { HostRelease } from './schema.js';

const NAME = /^[a-z0-9][a-z0-9._-]*$/;

/** The running kernel's uname, for the `host` profile. */
export function runningKernel(): HostRelease {
  let domainname = '(none)';
  try {
    domainname = readFileSync('/proc/sys/kernel/domainname', 'utf8').trim() || domainname;
  } catch {
    // Not Linux, or /proc not mounted: keep the kernel's default.
  }
  return { release: release(), version: version(), machine: machine(), domainname };
}

/** Larger than any real profile (the shipped ones are a few KiB). */
const PROFILE_MAX_BYTES = 4 << 20;

function readText(file: string, where: string): string {
  return readUserFile(file, PROFILE_MAX_BYTES, (why) => {
    throw new ProfileError(`${where} ${why}; give a regular file of JSON that vjail can read`);
  });
}

function parseJson(text: string, where: string): unknown {
  try {
    return parseJsonExact(text, { bigints: false });
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    throw new ProfileError(`${where}:${e.line}:${e.column}: not valid JSON: ${e.detail}; fix the file there`);
  }
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

/** A cached Profile, if it has the shape parseProfile gives (else undefined: validate again). */
function cachedProfile(v: unknown): Profile | undefined {
  const p = v as Profile;
  const u = p?.uname;
  const ok =
    isString(p?.name) && isString(p.description) && isString(p.kernel) && typeof p.isHost === 'boolean' &&
    typeof u === 'object' && u !== null && [u.sysname, u.release, u.version, u.machine, u.domainname].every(isString) &&
    (u.nodename === undefined || isString(u.nodename)) &&
    isStrings(p.overrides?.add) && isStrings(p.overrides.remove) && Number.isInteger(p.shimErrorErrno);
  return ok ? p : undefined;
}

/**
 * Validate a profile file, or take the Profile validated earlier from the
 * same bytes, for the same running kernel, by the same validator (its code is
 * part of the inputs): zod is then not even loaded.
 */
function validated(file: string, where: string, host: HostRelease): Profile {
  const text = readText(file, where);
  const inputs = JSON.stringify([text, host, fingerprint()]);
  // One slot per file and build: two builds in use do not take turns overwriting it.
  const slot = `${file}\0${buildId ?? ''}`;
  // spawnJail in a loop loads the same file each time: the bytes are read again, the rest is remembered.
  const known = validatedHere.get(slot);
  if (known?.inputs === inputs) return known.profile;
  let profile = readCached('profiles', slot, inputs, cachedProfile);
  if (!profile) {
    profile = parseProfile(parseJson(text, where), where, host);
    writeCached('profiles', slot, inputs, profile);
  }
  if (validatedHere.size >= 64) validatedHere.clear();
  validatedHere.set(slot, { inputs, profile });
  return profile;
}

/** Profiles validated by this process, by file: each with the inputs it was validated from. */
const validatedHere = new Map<string, { inputs: string; profile: Profile }>();

/** Forget what this process validated: the next load reads the disk cache, as another process would. */
export function forgetProfilesValidatedHere(): void {
  validatedHere.clear();
}

let validator: string | undefined;
/** The validator's fingerprint: its code, which does not change while the process runs. */
const fingerprint = (): string => (validator ??= validatorFingerprint());

/**
 * Load a profile by name (`linux-4.19`, from the package's profiles/) or by
 * path (anything containing "/" or ending in ".json"). `host` describes the
 * running kernel for the `host` profile; by default it is read from the system.
 */
export function loadProfile(nameOrPath: string, host?: HostRelease): Profile {
  const running = host ?? runningKernel();
  if (nameOrPath.includes('/') || nameOrPath.endsWith('.json')) {
    const where = `profile file ${JSON.stringify(nameOrPath)}`;
    if (!existsSync(nameOrPath)) {
      throw new ProfileError(`${where} does not exist; give an existing file or a profile name (run "vjail profiles list" to see them)`);
    }
    return validated(nameOrPath, where, running);
  }
  const file = dataPath('profiles', `${nameOrPath}.json`);
  if (!NAME.test(nameOrPath) || !existsSync(file)) {
    throw new ProfileError(`unknown profile ${JSON.stringify(nameOrPath)}; run "vjail profiles list" to see the available ones`);
  }
  const where = `profile ${JSON.stringify(nameOrPath)}`;
  const profile = validated(file, where, running);
  if (profile.name !== nameOrPath) {
    throw new ProfileError(`${where}: field "name" is ${JSON.stringify(profile.name)} but the file is ${nameOrPath}.json; make them the same`);
  }
  return profile;
}

/** Every profile shipped in profiles/: `host` first, then by kernel version. */
export function listProfiles(host?: HostRelease): Profile[] {
  const running = host ?? runningKernel();
  const names = readdirSync(dataPath('profiles'), { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.json'))
    .map((e) => basename(e.name, '.json'));
  return names
    .map((n) => loadProfile(n, running))
    .sort((a, b) => Number(b.isHost) - Number(a.isHost) || compareKernelVersions(a.kernel, b.kernel) || a.name.localeCompare(b.name));
}

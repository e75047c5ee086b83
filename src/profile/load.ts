import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { machine, release, version } from 'node:os';
import { basename } from 'node:path';
import { dataPath } from '../paths.js';
import { compareKernelVersions } from '../syscalls/version.js';
import { type HostRelease, ProfileError, parseProfile } from './schema.js';
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

function readJson(file: string, where: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ProfileError(`${where}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'}); check the path`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ProfileError(`${where}: not valid JSON (${(e as Error).message.replace(/\s+/g, ' ')}); fix the syntax`);
  }
}

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
    return parseProfile(readJson(nameOrPath, where), where, running);
  }
  const file = dataPath('profiles', `${nameOrPath}.json`);
  if (!NAME.test(nameOrPath) || !existsSync(file)) {
    throw new ProfileError(`unknown profile ${JSON.stringify(nameOrPath)}; run "vjail profiles list" to see the available ones`);
  }
  const where = `profile ${JSON.stringify(nameOrPath)}`;
  const profile = parseProfile(readJson(file, where), where, running);
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

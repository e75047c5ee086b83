/**
 * Policies shipped with vjail (the package's policies/ directory), so that
 * `--policy docker-default.json` works from any directory. A file of that
 * name where the user is wins: a path always means the file it names.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dataPath } from '../paths.js';

/** File names of the shipped policies. */
export function shippedPolicies(): string[] {
  try {
    return readdirSync(dataPath('policies')).filter((f) => f.endsWith('.json')).sort();
  } catch {
    return [];
  }
}

/** Short names of shipped policies: `--policy docker` is Docker's default seccomp profile. */
const SHORT_NAMES: Record<string, string> = { docker: 'docker-default.json' };

/** The file `--policy ARG` means: ARG itself where it exists or is a path, else a shipped policy of that name (".json" optional, or its short name). */
export function policyPath(arg: string): string {
  if (arg.includes('/') || existsSync(arg)) return arg;
  const shipped = shippedPolicies();
  const short = Object.hasOwn(SHORT_NAMES, arg) ? SHORT_NAMES[arg] : undefined;
  const name = shipped.includes(arg) ? arg : shipped.includes(`${arg}.json`) ? `${arg}.json` : short && shipped.includes(short) ? short : undefined;
  return name ? dataPath('policies', name) : arg;
}

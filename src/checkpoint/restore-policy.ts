/**
 * Which policy a restored jail runs under. An image is only as trustworthy
 * as whoever could write it: one that no key of the restoring user vouches
 * for (src/image/sign.ts) restores only under a policy the user names
 * (`--policy`), or under its own with an explicit `--trust-image`. Either
 * way restore says which policy is in force.
 */
import { authenticate, ImageError, type Manifest } from '../image/format.js';
import { parseJsonExact, JsonSyntaxError } from '../policy/json.js';
import { parseOciPolicy } from '../policy/oci.js';
import type { Policy } from '../policy/types.js';
import { loadProfile } from '../profile/load.js';

export interface PolicyChoice {
  /** A policy file the restoring user names: enforced instead of the image's. */
  named?: string;
  /**
   * The policy of whoever runs the restored jail, not the image's: an OCI
   * container's is its config.json's linux.seccomp (undefined: none), as
   * the engine that gave the config decides.
   */
  given?: { policy: Policy | undefined; source: string };
  /** Restore only if this key verifies the image's signature. */
  verifyKey?: string;
  /** Accept the image's own policy although no key vouches for the image. */
  trustImage?: boolean;
  /** Where the line naming the policy in force goes. */
  say?: (line: string) => void;
}

/** The policy to pass to spawnJail (a file, a loaded policy, or none). */
export function policyInForce(dir: string, m: Manifest, choice: PolicyChoice = {}): string | Policy | undefined {
  const auth = authenticate(dir, choice.verifyKey);
  const say = choice.say ?? (() => {});
  if (choice.given) {
    say(`policy in force: ${choice.given.source} (the image's own is not used)`);
    return choice.given.policy;
  }
  if (choice.named) {
    say(`policy in force: ${choice.named} (named with --policy; the image's own is not used)`);
    return choice.named;
  }
  if (auth.by === null && !choice.trustImage) {
    throw new ImageError(`${dir} is not authenticated (${auth.why}), so the policy it names cannot be trusted; restore it under a policy you name with --policy FILE, check it with --verify-key FILE, or accept it as it is with --trust-image`);
  }
  const whose = auth.by === 'key' ? 'signed with --verify-key' : auth.by === 'local' ? 'signed on this machine' : 'not authenticated; --trust-image';
  if (m.policyText !== null) {
    say(`policy in force: the image's own copy of ${m.policy ?? 'its policy'} (${whose})`);
    return imagePolicy(m, m.policyText);
  }
  if (m.policy !== null) {
    // Images older than version 5 kept only the path: what it holds now is enforced.
    say(`policy in force: ${m.policy} as it reads now; the image kept only its path (${whose})`);
    return m.policy;
  }
  if (auth.by === null) say(`policy in force: none, as the image says (${whose})`);
  return undefined;
}

function imagePolicy(m: Manifest, text: string): Policy {
  const source = `the image's policy (${m.policy ?? 'saved'})`;
  let json: unknown;
  try {
    json = parseJsonExact(text);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    throw new ImageError(`${source} is not valid JSON: ${e.detail}`);
  }
  return parseOciPolicy(json, source, { kernelRelease: loadProfile(m.profile).uname.release });
}

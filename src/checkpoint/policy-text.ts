/**
 * The policy a checkpointed jail runs under, as text for its image: an image
 * carries the policy itself, so a restore enforces what was enforced, not
 * whatever the file says by then (or an attacker put there).
 */
import { POLICY_MAX_BYTES, readUserFile } from '../input.js';
import { CheckpointError } from './errors.js';

export function readPolicyText(path: string): string {
  return readUserFile(path, POLICY_MAX_BYTES, (why) => {
    throw new CheckpointError(`the jail's policy ${path} ${why}; the image must carry it (the jail was left running)`);
  });
}

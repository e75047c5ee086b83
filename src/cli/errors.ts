import { FilterTooLargeError } from '../bpf/assemble.js';
import { LaunchError } from '../launch.js';
import { PolicyError } from '../policy/oci.js';
import { ProfileError } from '../profile/schema.js';

/** Bad input from the user: print the message on one line and exit 2. */
export class UsageError extends Error {}

/** The one-line message for an error the user can fix, or undefined for a bug. */
export function userMessage(e: unknown): string | undefined {
  if (e instanceof UsageError || e instanceof ProfileError || e instanceof PolicyError || e instanceof LaunchError || e instanceof FilterTooLargeError) {
    return e.message.split('\n')[0];
  }
  return undefined;
}

/** vjail's library API: the CLI is a thin layer over these. */
export { spawnJail, planJail, Jail, type JailOptions, type JailExit } from './jail.js';
export { LaunchError } from './launch.js';
export type { ReceiverMode, ReceiverState } from './native.js';
export { loadProfile, listProfiles, ProfileError } from './profile/load.js';
export type { Profile } from './profile/types.js';
export { loadOciPolicy, PolicyError } from './policy/oci.js';
export type { Policy } from './policy/types.js';
export { derivePlan, plan, diffProfiles } from './plan/plan.js';
export type { Action, Plan, ArchPlan, SyscallDecision } from './plan/action.js';
export { compile } from './bpf/compile.js';
export type { SyscallStats } from './supervisor/stats.js';
export type { Shim, ShimResult, ShimContext, Notification, CallerAccess } from '../shims/types.js';

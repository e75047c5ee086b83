import { native } from './native.js';

/** The functions of native/features.c (part of the same addon). */
interface FeatureAddon {
  memfdSealed(name: string, data: Buffer): number;
  probeFeatures(): NativeFeatureProbes;
}

/** Each value is 0 when the feature works, else the errno the kernel gave. */
export interface NativeFeatureProbes {
  /** seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER): user notification. */
  listener: number;
  /** SECCOMP_IOCTL_NOTIF_SET_FLAGS with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP. */
  syncWakeUp: number;
  /** SECCOMP_IOCTL_NOTIF_ADDFD. */
  addfd: number;
  /** The PAGEMAP_SCAN ioctl on /proc/PID/pagemap. */
  pagemapScan: number;
  /** Soft-dirty page tracking (CONFIG_MEM_SOFT_DIRTY). */
  softDirty: number;
}

function addon(): FeatureAddon {
  return native() as unknown as FeatureAddon;
}

/** A read-only fd of a sealed memfd holding `data` (close it when done). */
export function memfdSealed(name: string, data: Buffer): number {
  return addon().memfdSealed(name, data);
}

/** Probe the seccomp listener ioctls (in a throwaway child), PAGEMAP_SCAN and soft-dirty. */
export function probeNativeFeatures(): NativeFeatureProbes {
  return addon().probeFeatures();
}

/**
 * The door to native/lazypages.c: a restored process's userfaultfd served
 * from its image's page files on threads of their own (fault and prefetch).
 */
import { native } from '../native.js';

export interface LazyStats {
  faults: number;
  chunksOnFault: number;
  chunksPrefetched: number;
  bytes: number;
  forks: number;
  /** From the start of serving until every page was in place. */
  ms: number;
}

/** One range served: where it is, its page file, that file's runs and (when the image has them) chunk digests. */
export interface LazyRange {
  start: bigint;
  pages: number;
  fd: number;
  runs: Buffer;
  chunkPages: number;
  sums: Buffer | null;
}

interface LazyAddon {
  lazyStart(pid: number, remoteFd: number, ranges: LazyRange[], done: (kind: 'failed' | 'ended', error: string | null, stats: LazyStats) => void): object;
  lazyPrefetch(handle: object): void;
  lazyStop(handle: object): void;
}

export const lazyAddon = (): LazyAddon => native() as unknown as LazyAddon;

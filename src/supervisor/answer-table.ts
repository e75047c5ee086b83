import type { Action, ArchName, NativeAnswer, Plan, SyscallDecision } from '../plan/action.js';
import { IDENTITY_CALLS, TRACK } from '../plan/identity.js';

/** Layout of `struct answer` in native/supervisor.h (checked there by a static assert). */
const ENTRY_SIZE = 24;
export const TABLE_ENTRIES = 1024;

const KIND = { value: 1, errno: 2, struct: 3, continue: 4 } as const;

export interface AnswerTables {
  x86_64: Buffer;
  i386: Buffer;
  /** Bytes that `struct` answers copy into the caller. */
  pool: Buffer;
}

/**
 * The native answer table: for every syscall whose plan decision is a notify
 * with a fixed answer and no argument rules, the answer itself. The native
 * supervisor gives these without entering JavaScript; everything else it
 * queues for the shims. Each entry also says what the call may change of
 * the identities the open fast path keeps (src/plan/identity.ts), whoever
 * answers it.
 */
export function buildAnswerTables(plan: Plan): AnswerTables {
  const pool: Buffer[] = [];
  let poolLen = 0;
  const tables: Record<ArchName, Buffer> = {
    x86_64: Buffer.alloc(ENTRY_SIZE * TABLE_ENTRIES),
    i386: Buffer.alloc(ENTRY_SIZE * TABLE_ENTRIES),
  };
  for (const archPlan of plan.arches) {
    const table = tables[archPlan.arch];
    for (const d of archPlan.syscalls) {
      const track = IDENTITY_CALLS.get(d.name);
      if (track && d.nr >= 0 && d.nr < TABLE_ENTRIES) table.writeUInt8(TRACK[track], d.nr * ENTRY_SIZE + 20);
      const answer = nativeAnswerOf(d);
      if (!answer || d.nr < 0 || d.nr >= TABLE_ENTRIES) continue;
      const at = d.nr * ENTRY_SIZE;
      table.writeUInt8(KIND[answer.kind], at);
      switch (answer.kind) {
        case 'value':
          table.writeBigInt64LE(BigInt.asIntN(64, answer.value), at + 8);
          break;
        case 'errno':
          table.writeInt32LE(answer.errno, at + 4);
          break;
        case 'struct':
          table.writeUInt8(answer.argIndex, at + 1);
          table.writeUInt16LE(answer.bytes.length, at + 2);
          table.writeUInt32LE(poolLen, at + 16);
          pool.push(Buffer.from(answer.bytes));
          poolLen += answer.bytes.length;
          break;
        case 'continue':
          break;
      }
    }
  }
  return { ...tables, pool: Buffer.concat(pool) };
}

function fixedAnswerOf(action: Action | undefined): NativeAnswer | undefined {
  return action?.kind === 'notify' && 'answer' in action ? action.answer : undefined;
}

/**
 * The calls of `arch` that may be answered by JavaScript (a shim, or
 * answers that differ by argument): the others never wait for the Node loop.
 */
export function answeredByJavaScript(plan: Plan, arch: ArchName): Set<number> {
  const out = new Set<number>();
  for (const d of plan.arches.find((a) => a.arch === arch)?.syscalls ?? []) {
    const notified = [...d.rules.map((r) => r.action), d.fallback].some((a) => a.kind === 'notify');
    if (notified && !nativeAnswerOf(d)) out.add(d.nr);
  }
  const a = plan.arches.find((x) => x.arch === arch);
  if (a?.defaultAction.kind === 'notify' && !fixedAnswerOf(a.defaultAction)) out.add(-1); // every unlisted call too
  return out;
}

/**
 * The answer to every notification of this decision, if one is known in
 * advance: its only notify action's, or the same fixed answer of each (the
 * BPF filter decides the other actions; they never reach the supervisor).
 */
function nativeAnswerOf(d: SyscallDecision): NativeAnswer | undefined {
  const notified = [...d.rules.map((r) => r.action), d.fallback].filter((a) => a.kind === 'notify');
  const answers = notified.map(fixedAnswerOf);
  const first = answers[0];
  if (!first || answers.some((a) => !a || !sameAnswer(a, first))) return undefined;
  return first;
}

function sameAnswer(x: NativeAnswer, y: NativeAnswer): boolean {
  if (x.kind !== y.kind) return false;
  switch (x.kind) {
    case 'value':
      return x.value === (y as typeof x).value;
    case 'errno':
      return x.errno === (y as typeof x).errno;
    case 'struct':
      return x.argIndex === (y as typeof x).argIndex && Buffer.compare(Buffer.from(x.bytes), Buffer.from((y as typeof x).bytes)) === 0;
    case 'continue':
      return true;
  }
}

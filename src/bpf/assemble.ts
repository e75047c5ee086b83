import { BPF_JA, BPF_JMP, BPF_MAXINSNS, MAX_COND_JUMP } from './constants.js';
import { encodeProgram, type SockFilter } from './insn.js';

/** Rules that no kernel would load as one filter: bad input, not a bug. */
export class FilterTooLargeError extends Error {
  override name = 'FilterTooLargeError';
}

/** A jump target; bound to the instruction emitted right after `place()`. */
export type Label = number & { readonly __label: unique symbol };

interface Node {
  code: number;
  k: number;
  /** Conditional jumps: where to go when the test holds / fails. */
  jt?: Label;
  jf?: Label;
  /** BPF_JA: where to go. */
  target?: Label;
}

/**
 * Builds a classic-BPF program with symbolic forward jumps. Conditional jumps
 * only encode 8-bit offsets, so when a target ends up further than 255
 * instructions away, `assemble()` puts a BPF_JA (32-bit offset) right after the
 * jump and sends that side of the jump to it.
 */
export class Assembler {
  private nodes: Node[] = [];
  private owner = new Map<Label, Node>();
  private pending: Label[] = [];
  private labels = 0;

  label(): Label {
    return this.labels++ as Label;
  }

  /** Bind `label` to the next instruction emitted. */
  place(label: Label): void {
    this.pending.push(label);
  }

  /** An instruction that falls through (load, ALU) or ends the program (RET). */
  stmt(code: number, k: number): void {
    this.emit({ code, k });
  }

  jump(code: number, k: number, jt: Label, jf: Label): void {
    this.emit({ code, k, jt, jf });
  }

  ja(target: Label): void {
    this.emit({ code: BPF_JMP | BPF_JA, k: 0, target });
  }

  assemble(): Buffer {
    if (this.pending.length > 0) throw new Error('BPF assembler: a label was placed after the last instruction');
    // Stepping stones only add instructions: too many already is refused before the passes,
    // each of which walks the whole program (on a huge one, minutes of work).
    this.checkSize();
    while (this.insertLongJumps()) {
      // Each pass can push other jumps out of reach; repeat until none is.
    }
    this.checkSize();
    return encodeProgram(this.resolve());
  }

  private checkSize(): void {
    if (this.nodes.length <= BPF_MAXINSNS) return;
    throw new FilterTooLargeError(
      `the seccomp program needs ${this.nodes.length} instructions; the kernel accepts at most ${BPF_MAXINSNS} (BPF_MAXINSNS); ` +
        'reduce the argument rules in the policy or profile',
    );
  }

  private emit(node: Node): void {
    for (const l of this.pending) this.owner.set(l, node);
    this.pending = [];
    this.nodes.push(node);
  }

  /** One pass: give every out-of-reach conditional side a BPF_JA stepping stone. Returns whether any was added. */
  private insertLongJumps(): boolean {
    const index = this.indexOfNodes();
    const out: Node[] = [];
    let added = false;
    for (const node of this.nodes) {
      out.push(node);
      if (node.jt === undefined || node.jf === undefined) continue;
      const from = index.get(node)!;
      for (const side of ['jt', 'jf'] as const) {
        if (this.offset(index, from, node[side]!) <= MAX_COND_JUMP) continue;
        const stone: Node = { code: BPF_JMP | BPF_JA, k: 0, target: node[side] };
        const l = this.label();
        this.owner.set(l, stone);
        node[side] = l;
        out.push(stone);
        added = true;
      }
    }
    this.nodes = out;
    return added;
  }

  private resolve(): SockFilter[] {
    const index = this.indexOfNodes();
    return this.nodes.map((node, at) => {
      if (node.target !== undefined) return { code: node.code, jt: 0, jf: 0, k: this.offset(index, at, node.target) };
      if (node.jt !== undefined && node.jf !== undefined) {
        return { code: node.code, jt: this.offset(index, at, node.jt), jf: this.offset(index, at, node.jf), k: node.k };
      }
      return { code: node.code, jt: 0, jf: 0, k: node.k };
    });
  }

  private indexOfNodes(): Map<Node, number> {
    return new Map(this.nodes.map((n, i) => [n, i]));
  }

  /** Instructions skipped when jumping from `from` to `label` (BPF jumps are relative to the next instruction). */
  private offset(index: Map<Node, number>, from: number, label: Label): number {
    const node = this.owner.get(label);
    if (!node) throw new Error(`BPF assembler: label ${label} was never placed`);
    const off = index.get(node)! - from - 1;
    if (off < 0) throw new Error('BPF assembler: backward jump (classic BPF only jumps forward)');
    return off;
  }
}

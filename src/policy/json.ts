/**
 * A strict JSON reader (RFC 8259) that keeps large integers exact.
 *
 * Seccomp argument values are u64; a file may hold 18446744073709551615,
 * which `JSON.parse` would round to a double. Node 20's `JSON.parse` does not
 * give revivers the source text, so we read the text ourselves: an integer
 * literal that is not a safe JavaScript integer becomes a `bigint`; every
 * other value comes out as `JSON.parse` would give it.
 *
 * Errors carry the 1-based line and column of the offending character.
 *
 * Stricter than JSON.parse where a file may be hostile or ambiguous: a key
 * given twice in one object is refused (which one a reader keeps differs
 * between readers), and nesting is bounded (MAX_DEPTH) so that a deep file
 * is an error, not a stack overflow.
 */

/** Deeper than any policy, profile or manifest vjail reads. */
export const MAX_DEPTH = 256;

export class JsonSyntaxError extends Error {
  constructor(
    readonly detail: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${detail} at line ${line}, column ${column}`);
    this.name = 'JsonSyntaxError';
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

export interface JsonOptions {
  /** Integer literals beyond the safe range as bigints (default), or as numbers, as JSON.parse gives them. */
  bigints?: boolean;
}

export function parseJsonExact(text: string, opts: JsonOptions = {}): unknown {
  const bigints = opts.bigints ?? true;
  const fast = nativeParse(text, bigints);
  return fast ? fast.value : new Reader(text, bigints).document();
}

/** An integer this long may not be a safe one (2^53 has 16 digits). */
const LONG_DIGITS = /[0-9]{16}/;

/**
 * The same answer, found with JSON.parse: V8's parser is ~10x faster than
 * ours, colder still (a manifest of 1000 descriptors: 5 ms against 60 ms in
 * a fresh process). It is used only where it gives exactly what ours would:
 * no integer that might need a bigint, and as many keys in the result as in
 * the text (a key given twice leaves one fewer). Anything else (an error, a
 * repeated key, nesting past the limit) goes to our reader, which says what
 * and where.
 *
 * The text's keys are counted by its colons: in valid JSON each is the one
 * after a key or a character of a string, and the parsed strings hold the
 * latter (a colon written as \u003a is not counted there: such a text goes
 * to our reader). A key given twice takes itself, and any colon in what it
 * held first, out of the result: the colons left over are then more than
 * its keys, never as many. (Matching every string with a regular
 * expression instead cost more than JSON.parse itself on a 1.3 MB manifest.)
 */
function nativeParse(text: string, bigints: boolean): { value: unknown } | null {
  if (bigints && LONG_DIGITS.test(text)) return null;
  if (text.includes('\\u003a') || text.includes('\\u003A')) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const tally = { keys: 0, colons: 0 };
  if (!tallyIn(value, 0, tally)) return null;
  return colonsIn(text) === tally.keys + tally.colons ? { value } : null;
}

function colonsIn(s: string): number {
  let n = 0;
  for (let i = s.indexOf(':'); i >= 0; i = s.indexOf(':', i + 1)) n++;
  return n;
}

/** Add the keys of every object in a parsed value, and the colons in its keys and strings, to `t`; false when nested deeper than MAX_DEPTH. */
function tallyIn(v: unknown, depth: number, t: { keys: number; colons: number }): boolean {
  if (typeof v === 'string') {
    t.colons += colonsIn(v);
    return true;
  }
  if (typeof v !== 'object' || v === null) return true;
  if (depth >= MAX_DEPTH) return false;
  if (Array.isArray(v)) {
    for (const m of v) if (!tallyIn(m, depth + 1, t)) return false;
    return true;
  }
  for (const k of Object.keys(v)) {
    t.keys++;
    t.colons += colonsIn(k);
    if (!tallyIn((v as Record<string, unknown>)[k], depth + 1, t)) return false;
  }
  return true;
}

class Reader {
  private pos = 0;
  private depth = 0;

  constructor(
    private readonly text: string,
    private readonly bigints: boolean,
  ) {
    if (text.charCodeAt(0) === 0xfeff) this.pos = 1; // byte-order mark
  }

  document(): unknown {
    this.space();
    const v = this.value();
    this.space();
    if (this.pos < this.text.length) this.fail(`unexpected ${this.describe()} after the JSON value`);
    return v;
  }

  private value(): unknown {
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.object();
      case '[':
        return this.array();
      case '"':
        return this.string();
      case 't':
        return this.word('true', true);
      case 'f':
        return this.word('false', false);
      case 'n':
        return this.word('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
        return this.fail(`expected a value, found ${this.describe()}`);
    }
  }

  private object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.items('}', () => {
      if (this.text[this.pos] !== '"') this.fail(`expected a "quoted" property name, found ${this.describe()}`);
      const at = this.pos;
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(out, key)) {
        this.pos = at;
        this.fail(`key ${JSON.stringify(key)} appears twice in one object; keep one`);
      }
      this.space();
      this.expect(':');
      this.space();
      // defineProperty: a key named "__proto__" is data, not a prototype switch.
      Object.defineProperty(out, key, { value: this.value(), enumerable: true, writable: true, configurable: true });
    });
    return out;
  }

  private array(): unknown[] {
    const out: unknown[] = [];
    this.items(']', () => out.push(this.value()));
    return out;
  }

  /** The comma-separated members of an object or array; `pos` is at its opening bracket. */
  private items(close: string, member: () => void): void {
    if (++this.depth > MAX_DEPTH) this.fail(`nested more than ${MAX_DEPTH} deep (the limit)`);
    this.pos++;
    this.space();
    if (this.text[this.pos] === close) {
      this.pos++;
      this.depth--;
      return;
    }
    for (;;) {
      this.space();
      member();
      this.space();
      if (this.text[this.pos] !== ',') break;
      this.pos++;
    }
    this.expect(close);
    this.depth--;
  }

  private string(): string {
    this.pos++; // opening quote
    let out = '';
    let start = this.pos;
    for (;;) {
      if (this.pos >= this.text.length) this.fail('unterminated string');
      const code = this.text.charCodeAt(this.pos);
      if (code === 0x22) break; // "
      if (code < 0x20) this.fail('control character in string (escape it)');
      if (code !== 0x5c) {
        this.pos++;
        continue;
      }
      out += this.text.slice(start, this.pos);
      const e = this.text[this.pos + 1];
      if (e === 'u') {
        const hex = this.text.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
          this.pos++;
          this.fail('bad \\u escape (needs four hex digits)');
        }
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else if (e !== undefined && e in ESCAPES) {
        out += ESCAPES[e];
        this.pos += 2;
      } else {
        this.pos++;
        this.fail(`bad escape \\${e ?? ''} in string`);
      }
      start = this.pos;
    }
    out += this.text.slice(start, this.pos);
    this.pos++; // closing quote
    return out;
  }

  private number(): number | bigint {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (!m) return this.fail(`bad number`);
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (this.bigints && m[1] === undefined && m[2] === undefined && !Number.isSafeInteger(n)) return BigInt(m[0]);
    return n;
  }

  private word<T>(w: string, v: T): T {
    if (!this.text.startsWith(w, this.pos)) this.fail(`expected a value, found ${this.describe()}`);
    this.pos += w.length;
    return v;
  }

  private expect(c: string): void {
    if (this.text[this.pos] !== c) this.fail(`expected '${c}', found ${this.describe()}`);
    this.pos++;
  }

  private space(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.pos++;
    }
  }

  private describe(): string {
    if (this.pos >= this.text.length) return 'end of input';
    return JSON.stringify(this.text[this.pos]);
  }

  private fail(detail: string): never {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < this.pos && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new JsonSyntaxError(detail, line, this.pos - lineStart + 1);
  }
}

/** `state ID`: the OCI state JSON. */
import { writeSync } from 'node:fs';
import type { Globals } from './globals.js';
import { ociState, readStored } from './state.js';

export function stateCommand(g: Globals, id: string): void {
  writeSync(1, `${JSON.stringify(ociState(readStored(g.root, id)), null, 2)}\n`);
}

/**
 * Entry point of `vjail compat` inside a VM guest: read the job, run every
 * cell on the guest's kernel, write the results next to the job.
 * Usage: node dist/src/compat/guest.js JOB.json RESULT.json
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { runCells } from './cells.js';
import type { CompatJob } from './types.js';

const [jobFile, resultFile] = process.argv.slice(2);
if (!jobFile || !resultFile) {
  process.stderr.write('usage: node guest.js JOB.json RESULT.json\n');
  process.exit(2);
}
const job = JSON.parse(readFileSync(jobFile, 'utf8')) as CompatJob;
const result = await runCells(job);
writeFileSync(`${resultFile}.tmp`, JSON.stringify(result));
renameSync(`${resultFile}.tmp`, resultFile);
process.exit(0);

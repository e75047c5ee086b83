import { fromHex, openImage, PAGE_SIZE } from '../image/format.js';
import { asUserError } from './checkpoint.js';

/** `vjail inspect DIR`: verify an image and describe what it holds. */
export function inspectCommand(dir: string, flags: { json?: boolean }): number {
  let image;
  try {
    image = openImage(dir);
  } catch (e) {
    throw asUserError(e, 'inspect');
  }
  const m = image.manifest;
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(m, null, 2)}\n`);
    return 0;
  }
  const p = m.process;
  const out: string[] = [
    `image     ${dir} (format ${m.version}, verified)`,
    `created   ${m.createdAt} on Linux ${m.host.release}`,
    `process   ${p.comm} (pid ${p.pid}) ${p.exe}`,
    `profile   ${m.profile}${m.policy ? `   policy ${m.policy}` : ''}${m.emulate.length ? `   emulate ${m.emulate.join(',')}` : ''}`,
    `cwd       ${p.cwd}   umask ${p.umask.toString(8).padStart(4, '0')}   personality ${p.personality}`,
    `rip       ${p.registers.gpr.rip}   rsp ${p.registers.gpr.rsp}   fs_base ${p.registers.gpr.fs_base}`,
    `signals   blocked ${p.signals.blocked}, ${p.signals.actions.length} handlers, ${p.signals.pending.length} queued`,
    `rseq      ${p.rseq ? `${p.rseq.address} (${p.rseq.size} bytes)` : 'none'}`,
    'mappings:',
  ];
  for (const map of p.mappings) {
    const size = Number(fromHex(map.end) - fromHex(map.start));
    const saved = map.pages ? `${map.pages.size / PAGE_SIZE}/${size / PAGE_SIZE} pages saved` : '';
    out.push(`  ${map.start.padStart(14)}-${map.end.padEnd(14)} ${map.perms} ${map.kind.padEnd(11)} ${saved.padEnd(24)} ${map.name ?? ''}`.trimEnd());
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

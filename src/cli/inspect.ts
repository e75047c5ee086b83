import { type Description, describeSignature, fromHex, openImage, PAGE_SIZE } from '../image/format.js';
import { asUserError } from './checkpoint.js';
import { UsageError } from './errors.js';
import { needsUnpacking, plainImage } from './stream.js';

/** `vjail inspect DIR|-`: verify an image (a stream or packed one first unpacked) and describe what it holds. */
export async function inspectCommand(dir: string, flags: { json?: boolean; encryptKey?: string }): Promise<number> {
  let image;
  let trust: string;
  let plain: { dir: string; cleanup: () => void } | undefined;
  try {
    if (needsUnpacking(dir)) plain = await plainImage(dir, flags.encryptKey);
    else if (flags.encryptKey !== undefined) throw new UsageError(`${dir} is a plain image directory, not encrypted; leave out --encrypt-key`);
    image = openImage(plain?.dir ?? dir);
    trust = describeSignature(plain?.dir ?? dir);
  } catch (e) {
    throw asUserError(e, 'inspect');
  } finally {
    plain?.cleanup();
  }
  const m = image.manifest;
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(m, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [
    `image     ${dir} (format ${image.version}, verified)`,
    `created   ${m.createdAt} on Linux ${m.host.release}`,
    `profile   ${m.profile}${m.policy ? `   policy ${m.policy}` : ''}${m.emulate.length ? `   emulate ${m.emulate.join(',')}` : ''}`,
    `trust     ${trust}`,
    `pids      ${m.pidNamespace ? 'kept (own PID namespace; PID 1 is vjail-init)' : 'new on restore'}`,
  ];
  if (m.clocks) out.push(`clocks    CLOCK_MONOTONIC ${(Number(m.clocks.monotonic) / 1e9).toFixed(3)} s   CLOCK_BOOTTIME ${(Number(m.clocks.boottime) / 1e9).toFixed(3)} s`);
  if (m.cpu) {
    out.push(`cpu       ${m.cpu.baseline ? 'x86-64 baseline (--cpu-baseline)' : 'the dumping CPU\'s features'}: ${m.cpu.flags.join(' ')}`);
    out.push(`xsave     XCR0 ${m.cpu.xfeatures}, in use ${m.cpu.xstateUsed}`);
  }
  if (m.external.length) {
    out.push(`INCOMPLETE: saved with --external warn, without:`);
    for (const line of m.external) out.push(`  ${line}`);
  }
  if (m.pipes.length) out.push(`pipes     ${m.pipes.map((p) => `${p.id} (${p.capacity} bytes${p.data ? `, ${m.blobs.find((b) => b.file === p.data)?.size ?? '?'} queued` : ''})`).join(', ')}`);
  for (const p of m.processes) {
    const ids = m.pidNamespace ? `   ppid ${p.ppid} pgid ${p.pgid} sid ${p.sid}` : '';
    if (p.state === 'zombie') {
      const how = (p.status & 0x7f) === 0 ? `exit status ${(p.status >> 8) & 0xff}` : `signal ${p.status & 0x7f}`;
      out.push(`process   ${p.comm} (pid ${p.pid}) zombie, ${how}${ids}`);
      continue;
    }
    out.push(
      `process   ${p.comm} (pid ${p.pid}) ${p.exe}${ids}`,
      `cwd       ${p.cwd}   umask ${p.umask.toString(8).padStart(4, '0')}   personality ${p.personality}`,
      `signals   ${p.signals.actions.length} handlers, ${p.signals.pending.length} queued for the process`,
    );
    const creds = p.threads[0]!.creds;
    if (creds) out.push(`creds     uids ${creds.uids.join('/')}   gids ${creds.gids.join('/')}   groups ${creds.groups.join(',') || 'none'}   effective caps ${creds.caps.effective}`);
    const timers = [
      ...p.timers.itimers.map((t) => `itimer ${t.which} ${t.value}/${t.interval} us`),
      ...p.timers.posix.map((t) => `timer ${t.id} clock ${t.clock} signal ${t.signal} ${t.remaining}/${t.interval} ns`),
    ];
    if (timers.length) out.push(`timers    ${timers.join('   ')}`);
    if (p.vdso) out.push(`vdso      ${p.vdso.size} bytes, sha256 ${p.vdso.sha256.slice(0, 16)}…, ${p.vdso.symbols.map((s) => `${s.name}+0x${s.offset.toString(16)}`).join(' ')}`);
    for (const t of p.threads) {
      const r = t.registers.gpr;
      out.push(`thread    ${t.tid}${t.comm !== null ? ` ${t.comm}` : ''}   rip ${r.rip}   rsp ${r.rsp}   fs_base ${r.fs_base}   blocked ${t.blocked}, ${t.pending.length} queued   rseq ${t.rseq ? `${t.rseq.address} (${t.rseq.size} bytes)` : 'none'}`);
    }
    if (p.fds.length) out.push('descriptors:');
    for (const f of p.fds) {
      const d = m.descriptions.find((x) => x.id === f.description)!;
      out.push(`  ${String(f.fd).padStart(4)} ${d.kind.padEnd(9)} flags 0${d.flags.toString(8).padEnd(8)} ${f.cloexec ? 'cloexec ' : '        '}#${String(d.id).padEnd(4)} ${describeDescription(d)}`);
    }
    out.push('mappings:');
    for (const map of p.mappings) {
      const size = Number(fromHex(map.end) - fromHex(map.start));
      const saved = map.pages ? `${map.pages.size / PAGE_SIZE}/${size / PAGE_SIZE} pages saved` : map.object !== undefined ? `object ${map.object}` : '';
      out.push(`  ${map.start.padStart(14)}-${map.end.padEnd(14)} ${map.perms} ${map.kind.padEnd(11)} ${saved.padEnd(24)} ${map.name ?? ''}`.trimEnd());
    }
  }
  if (m.sharedMemory.length) out.push('shared memory:');
  for (const o of m.sharedMemory) {
    const what = o.kind === 'memfd' ? `memfd:${o.name} seals 0x${o.seals.toString(16)}` : o.kind === 'file' ? `${o.path}${o.deleted ? ' (deleted)' : ''}` : o.kind === 'sysv' ? `shmid ${o.shmid} key 0x${(o.key >>> 0).toString(16)} mode ${o.mode.toString(8)}${o.removed ? ' removed' : ''}` : 'MAP_SHARED|MAP_ANONYMOUS';
    out.push(`  ${String(o.id).padStart(4)} ${o.kind.padEnd(6)} ${String(o.size).padStart(12)} bytes, ${(o.pages?.size ?? 0) / PAGE_SIZE} pages saved   ${what}`);
  }
  for (const s of m.sysvIpc?.semaphores ?? []) out.push(`semaphores id ${s.id} key 0x${(s.key >>> 0).toString(16)} mode ${s.mode.toString(8)}: ${s.values.join(' ')}`);
  for (const q of m.sysvIpc?.queues ?? []) out.push(`queue     id ${q.id} key 0x${(q.key >>> 0).toString(16)} mode ${q.mode.toString(8)}: ${q.messages.length} message(s)`);
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

/** What a description is, in a few words. */
function describeDescription(d: Description): string {
  switch (d.kind) {
    case 'file': return `${d.path}${fromHex(d.pos) ? ` at ${fromHex(d.pos)}` : ''}`;
    case 'stdio': return `the restoring side's ${['stdin', 'stdout', 'stderr'][d.stream]} (was the jail's ${d.what === 'terminal' ? 'terminal' : 'log or file'})`;
    case 'pipe': return `${d.end} end of pipe ${d.pipe}`;
    case 'fifo': return `FIFO ${d.path}`;
    case 'eventfd': return `eventfd, count ${fromHex(d.count)}${d.semaphore ? ', semaphore' : ''}`;
    case 'chardev': return `${d.path} (${d.rdev})`;
    case 'memfd': return `memfd ${d.name}, ${d.file.size} bytes${d.seals ? `, seals 0x${d.seals.toString(16)}` : ''}${fromHex(d.pos) ? ` at ${fromHex(d.pos)}` : ''}`;
    case 'deleted': return `${d.path} (deleted), ${d.file.size} bytes${fromHex(d.pos) ? ` at ${fromHex(d.pos)}` : ''}`;
    case 'signalfd': return `signalfd, mask ${d.mask}`;
    case 'timerfd': return `timerfd on clock ${d.clock}, ${d.abstime ? 'absolute' : 'relative'}, ${fromHex(d.remaining)} ns left, every ${fromHex(d.interval)} ns, ${fromHex(d.ticks)} unread`;
    case 'epoll': return `epoll watching ${d.watches.map((w) => `${w.fd} (0x${w.events.toString(16)})`).join(', ') || 'nothing'}`;
    case 'inotify': return `inotify: ${d.watches.map((w) => `wd ${w.wd} ${w.path}`).join(', ') || 'no watches'}`;
    case 'pidfd': return `pidfd of process ${d.pid}`;
    case 'unix': return `unix ${d.type} socket, ${d.state}${d.name ? ` as ${d.name.startsWith('00') ? `@${Buffer.from(d.name, 'hex').subarray(1).toString()}` : Buffer.from(d.name, 'hex').toString().replace(/\0+$/, '')}` : ''}${d.peer ? ` to socket ${d.peer}` : ''}${d.queue ? ', data queued' : ''}`;
    case 'inet': return `${d.protocol.toUpperCase()}/${d.family} socket, ${d.state}${d.local ? ` on ${d.local.addr} port ${d.local.port}` : ''}${d.remote ? ` to ${d.remote.addr} port ${d.remote.port}` : ''}`;
    case 'tcp': return `TCP/${d.family} connection ${d.local.addr} port ${d.local.port} -> ${d.remote.addr} port ${d.remote.port} (repair mode)`;
    case 'external': return `NOT SAVED: ${d.reason}; restore needs --inherit-fd N:${d.key}`;
    default: return (d as { kind: string }).kind;
  }
}

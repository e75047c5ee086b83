/**
 * Credentials, per thread (the kernel keeps them per task): real,
 * effective, saved and filesystem user and group IDs, supplementary
 * groups, the capability sets, securebits, no_new_privs and the audit
 * loginuid. Collected from /proc/PID/task/TID/status and loginuid, with
 * PR_GET_SECUREBITS run in the thread; restored inside each thread, last
 * of its injected calls but the parent-death signal (a change of
 * credentials clears it), since dropping root ends what the restore may do.
 *
 * IDs are saved as the jail sees them: in a jail with a user namespace of
 * its own, /proc's IDs (ours) are read through its maps.
 */
import { readFileSync } from 'node:fs';
import { type Creds, fromHex, toHex } from '../../image/format.js';
import { type Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';
import { type IdView, idViewOf, inside } from '../../userns.js';

const PR_SET_KEEPCAPS = 8;
const PR_CAPBSET_DROP = 24;
const PR_GET_SECUREBITS = 27;
const PR_SET_SECUREBITS = 28;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const LOGINUID_UNSET = 4294967295;
const AT_FDCWD = -100;
const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;

function field(status: string, key: string): string {
  const m = new RegExp(`^${key}:[ \\t]*(.*)$`, 'm').exec(status);
  if (!m) throw new TraceeError(`/proc status has no ${key} line`);
  return m[1]!.trim();
}

const ids = (s: string): [number, number, number, number] => {
  const v = s.split(/\s+/).map(Number);
  return [v[0]!, v[1]!, v[2]!, v[3]!];
};

/** What /proc says of a task's credentials (all but securebits), its IDs as the jail sees them. */
function fromProc(tid: number): Omit<Creds, 'securebits'> {
  const s = readFileSync(`/proc/${tid}/status`, 'utf8');
  const cap = (k: string): string => toHex(BigInt(`0x${field(s, k)}`));
  const login = Number(readFileSync(`/proc/${tid}/loginuid`, 'utf8').trim());
  const view: IdView | null = idViewOf(tid);
  const uid = (id: number): number => (view ? inside(view.uid, id) : id);
  const gid = (id: number): number => (view ? inside(view.gid, id) : id);
  return {
    uids: ids(field(s, 'Uid')).map(uid) as Creds['uids'],
    gids: ids(field(s, 'Gid')).map(gid) as Creds['gids'],
    groups: field(s, 'Groups').split(/\s+/).filter(Boolean).map(Number).map(gid),
    caps: { inheritable: cap('CapInh'), permitted: cap('CapPrm'), effective: cap('CapEff'), bounding: cap('CapBnd'), ambient: cap('CapAmb') },
    noNewPrivs: field(s, 'NoNewPrivs') === '1',
    loginuid: login === LOGINUID_UNSET ? null : login,
  };
}

/** One stopped thread (`t.pid` its TID, ours). */
export async function collectCreds(t: Tracee): Promise<Creds> {
  const securebits = Number(await t.syscallOk('prctl(PR_GET_SECUREBITS)', SYS.prctl, PR_GET_SECUREBITS, 0, 0, 0, 0));
  return { ...fromProc(t.pid), securebits };
}

const bits = (mask: bigint): number[] => [...Array(64).keys()].filter((b) => (mask >> BigInt(b)) & 1n);

// linux/capability.h, in bit order.
const CAP_NAMES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE',
  'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE',
  'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
];

/** `CAP_SYS_RESOURCE, CAP_BPF` for a mask. */
export const capNames = (mask: bigint): string => bits(mask).map((b) => `CAP_${CAP_NAMES[b] ?? b}`).join(', ');

/** The saved credentials less the capabilities in `absent`, from every set. */
function without(c: Creds, absent: bigint): Creds {
  const keep = (hex: string): string => toHex(fromHex(hex) & ~absent);
  const k = c.caps;
  return { ...c, caps: { inheritable: keep(k.inheritable), permitted: keep(k.permitted), effective: keep(k.effective), bounding: keep(k.bounding), ambient: keep(k.ambient) } };
}

async function capset(t: Tracee, scratch: Scratch, eff: bigint, prm: bigint, inh: bigint): Promise<void> {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0);
  b.writeInt32LE(0, 4);
  [eff, prm, inh].forEach((v, i) => {
    b.writeUInt32LE(Number(v & 0xffffffffn), 8 + i * 4);
    b.writeUInt32LE(Number(v >> 32n), 20 + i * 4);
  });
  t.write(scratch.addr, b);
  await t.syscallOk('capset', SYS.capset, scratch.addr, scratch.addr + 8n);
}

/**
 * Give the thread (the restorer's copy: root, every capability) the saved
 * credentials. Root's capabilities are kept (PR_SET_KEEPCAPS, then capset)
 * until the IDs, groups and securebits are set, then lowered to the saved
 * sets; ambient ones are raised in between. Read back from /proc and
 * compared: a difference fails the restore.
 *
 * A capability the saved thread held that this side cannot grant (it is
 * not in the restorer's bounding set: root here has less than root where
 * the image was made, or the image's kernel knew capabilities this one
 * does not) is left out of every set; the mask of those is returned for
 * the caller to report.
 */
export async function restoreCreds(t: Tracee, scratch: Scratch, saved: Creds, what: string): Promise<bigint> {
  const have = fromProc(t.pid);
  const k = saved.caps;
  const held = fromHex(k.inheritable) | fromHex(k.permitted) | fromHex(k.effective) | fromHex(k.ambient);
  const notHere = held & ~fromHex(have.caps.bounding);
  const c = without(saved, ~fromHex(have.caps.bounding));
  if (c.loginuid !== null && c.loginuid !== have.loginuid) {
    t.write(scratch.addr, Buffer.from('/proc/thread-self/loginuid\0'));
    const fd = await t.syscallOk(`open of /proc/thread-self/loginuid in ${what}`, SYS.openat, AT_FDCWD, scratch.addr, O_WRONLY | O_CLOEXEC, 0);
    const text = Buffer.from(String(c.loginuid));
    t.write(scratch.addr, text);
    const w = await t.syscall(SYS.write, fd, scratch.addr, text.length);
    await t.syscall(SYS.close, fd);
    if (w < 0n) throw new TraceeError(`the loginuid ${c.loginuid} of ${what} cannot be set here (errno ${-w}: audit may make it immutable)`);
  }
  if (c.noNewPrivs) await t.syscallOk(`prctl(PR_SET_NO_NEW_PRIVS) in ${what}`, SYS.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  else if (have.noNewPrivs) throw new TraceeError(`${what} ran without no_new_privs, which a jail always sets; it cannot be cleared`);

  const full = fromHex(have.caps.permitted);
  for (const cap of bits(fromHex(have.caps.bounding) & ~fromHex(c.caps.bounding))) {
    await t.syscallOk(`prctl(PR_CAPBSET_DROP, ${cap}) in ${what}`, SYS.prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
  }
  await t.syscallOk(`prctl(PR_SET_KEEPCAPS) in ${what}`, SYS.prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0);
  // Already the same (the restorer's are its user's): left alone, as a user namespace without newgidmap forbids setgroups.
  if (JSON.stringify(have.groups) !== JSON.stringify(c.groups)) {
    const list = Buffer.alloc(Math.max(4, c.groups.length * 4));
    c.groups.forEach((g, i) => list.writeUInt32LE(g, i * 4));
    if (list.length > scratch.size) throw new TraceeError(`${what} has too many supplementary groups (${c.groups.length})`);
    t.write(scratch.addr, list);
    await t.syscallOk(`setgroups in ${what}`, SYS.setgroups, c.groups.length, scratch.addr);
  }
  await t.syscallOk(`setresgid in ${what}`, SYS.setresgid, c.gids[0], c.gids[1], c.gids[2]);
  await t.syscall(SYS.setfsgid, c.gids[3]);
  await t.syscallOk(`setresuid in ${what}`, SYS.setresuid, c.uids[0], c.uids[1], c.uids[2]);
  // A non-zero effective UID emptied the effective set: take it back from the permitted one to go on.
  await capset(t, scratch, full, full, fromHex(c.caps.inheritable));
  await t.syscall(SYS.setfsuid, c.uids[3]);
  for (const cap of bits(fromHex(c.caps.ambient))) {
    await t.syscallOk(`prctl(PR_CAP_AMBIENT_RAISE, ${cap}) in ${what}`, SYS.prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  }
  await t.syscallOk(`prctl(PR_SET_SECUREBITS) in ${what}`, SYS.prctl, PR_SET_SECUREBITS, c.securebits, 0, 0, 0);
  await capset(t, scratch, fromHex(c.caps.effective), fromHex(c.caps.permitted), fromHex(c.caps.inheritable));

  const got = fromProc(t.pid);
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  for (const k of ['uids', 'gids', 'groups', 'caps', 'noNewPrivs'] as const) {
    if (!same(got[k], c[k])) throw new TraceeError(`the credentials of ${what} came back with ${k} ${JSON.stringify(got[k])}, not ${JSON.stringify(c[k])}`);
  }
  return notHere;
}

import { readFileSync } from 'node:fs';

/** One entry of a newc cpio archive. */
export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer | string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/**
 * Write a "newc" (SVR4, no CRC) cpio archive, the format the kernel unpacks
 * as an initramfs. Owners are root; device nodes need no privileges here.
 */
export function writeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const add = (path: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0]) => {
    const name = Buffer.from(path.replace(/^\/+/, '') + '\0');
    const fields = [ino++, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], name.length, 0];
    const header = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
    parts.push(Buffer.from(header, 'latin1'), name, Buffer.alloc(pad4(110 + name.length)), data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) {
    switch (e.type) {
      case 'dir':
        add(e.path, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0));
        break;
      case 'file':
        add(e.path, S_IFREG | (e.mode ?? 0o644), Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data));
        break;
      case 'symlink':
        add(e.path, S_IFLNK | 0o777, Buffer.from(e.target));
        break;
      case 'chardev':
        add(e.path, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), [e.major, e.minor]);
        break;
    }
  }
  add('TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(parts);
}

/** True when an ELF executable has no program interpreter (is statically linked). */
export function isStaticElf(bin: Buffer): boolean {
  if (bin.length < 64 || bin.readUInt32BE(0) !== 0x7f454c46 || bin[4] !== 2) return false;
  const phoff = Number(bin.readBigUInt64LE(0x20));
  const phentsize = bin.readUInt16LE(0x36);
  const phnum = bin.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (bin.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) return false;
  }
  return true;
}

/** Where Debian's busybox-static puts its binary. */
export const BUSYBOX_PATHS = ['/usr/bin/busybox', '/bin/busybox'];

export function loadStaticBusybox(): Buffer {
  for (const p of BUSYBOX_PATHS) {
    let bin: Buffer;
    try {
      bin = readFileSync(p);
    } catch {
      continue;
    }
    if (isStaticElf(bin)) return bin;
    throw new Error(`vjail vm: ${p} is dynamically linked and cannot run in the guest's initramfs; install busybox-static (apt-get install busybox-static)`);
  }
  throw new Error('vjail vm: busybox not found; install busybox-static (apt-get install busybox-static)');
}

/** Mount tags of the 9p shares qemu offers the guest. */
export const TAG_HOSTROOT = 'vjroot';
export const TAG_CONTROL = 'vjctl';
export const TAG_SHARE = 'vjshare';
/** vjail's own package directory, read-only at its own path (it may live under /tmp, which the guest replaces). */
export const TAG_PACKAGE = 'vjpkg';

/**
 * The guest's /init. It loads the modules, mounts the host root (9p,
 * read-only) under a tmpfs overlay, mounts the control and shared
 * directories, moves that root over / and runs /ctl/run.sh chrooted into it, with its output sent
 * to files in the control directory, records the exit status and powers off.
 * Lines starting with "vjail-vm:" on the console mark its progress.
 */
export const INIT_SCRIPT = `#!/bin/busybox sh
B=/bin/busybox
say() { echo "vjail-vm: $*"; }
die() { say "FAILED: $*"; $B sync; $B poweroff -f; }
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in $($B cat /modules/order); do
  $B insmod /modules/$m.ko || die "insmod $m"
done
NINEP="trans=virtio,version=9p2000.L,msize=262144"
$B mount -t 9p -o $NINEP ${TAG_CONTROL} /ctl || die "mount ${TAG_CONTROL}"
. /ctl/boot.env
[ -n "$VJ_TIME" ] && $B date -s "@$VJ_TIME" >/dev/null
$B mount -t 9p -o $NINEP,ro,cache=loose ${TAG_HOSTROOT} /lower || die "mount ${TAG_HOSTROOT}"
$B mount -t tmpfs -o mode=0755 tmpfs /rw || die "mount tmpfs"
$B mkdir -p /rw/upper /rw/work
$B mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || die "mount overlay"
R=/newroot
$B mkdir -p $R/proc $R/sys $R/dev $R/tmp $R/run
$B mount -t proc proc $R/proc
$B mount -t sysfs sysfs $R/sys
$B mount -t devtmpfs devtmpfs $R/dev
$B mkdir -p $R/dev/pts $R/dev/shm
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
$B mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
$B mount -t tmpfs -o mode=1777 tmpfs $R/tmp
$B mount -t tmpfs -o mode=0755 tmpfs $R/run
$B mkdir -p $R/run/vjail
$B mount --bind /ctl $R/run/vjail
if [ -n "$VJ_PACKAGE" ]; then
  $B mkdir -p "$R$VJ_PACKAGE"
  $B mount -t 9p -o $NINEP,ro,cache=loose ${TAG_PACKAGE} "$R$VJ_PACKAGE" || die "mount ${TAG_PACKAGE}"
fi
if [ -n "$VJ_SHARE" ]; then
  $B mkdir -p "$R$VJ_SHARE"
  $B mount -t 9p -o $NINEP ${TAG_SHARE} "$R$VJ_SHARE" || die "mount ${TAG_SHARE}"
fi
$B hostname vjail-vm
say "running"
# Move the root over / (as switch_root does) before entering it: a chroot
# into $R alone shows paths under $R, from another mount namespace, with $R
# in front (/proc/PID/exe, /proc/PID/maps of a process in a jail's own).
cd $R && $B mount --move . / || die "mount --move $R /"
$B env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \\
  $B chroot . /bin/sh /run/vjail/run.sh </dev/null >/ctl/stdout 2>/ctl/stderr
echo $? >/ctl/exit.tmp
$B mv /ctl/exit.tmp /ctl/exit
$B sync
say "done"
$B poweroff -f
`;

/** Build the initramfs: busybox, the init script, /dev/console and the modules in load order. */
export function buildInitramfs(busybox: Buffer, modules: { name: string; image: Buffer }[]): Buffer {
  const entries: CpioEntry[] = [
    { type: 'dir', path: 'bin' },
    { type: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'init', data: INIT_SCRIPT, mode: 0o755 },
    { type: 'dir', path: 'dev' },
    { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
  ];
  for (const d of ['proc', 'sys', 'ctl', 'lower', 'rw', 'newroot', 'modules', 'tmp']) entries.push({ type: 'dir', path: d });
  for (const m of modules) entries.push({ type: 'file', path: `modules/${m.name}.ko`, data: m.image });
  entries.push({ type: 'file', path: 'modules/order', data: modules.map((m) => m.name).join('\n') + '\n' });
  return writeCpio(entries);
}

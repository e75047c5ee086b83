import { spawnSync } from 'node:child_process';
import { gunzipSync } from 'node:zlib';

/** Compression formats a bzImage payload can use, told apart by their magic bytes. */
const FORMATS: { name: string; magic: number[]; tool?: string[] }[] = [
  { name: 'gzip', magic: [0x1f, 0x8b] },
  { name: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], tool: ['xz', '-dc'] },
  { name: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd], tool: ['zstd', '-dcq'] },
  { name: 'lzma', magic: [0x5d, 0x00, 0x00], tool: ['xz', '--format=lzma', '-dc'] },
  { name: 'bzip2', magic: [0x42, 0x5a, 0x68], tool: ['bzip2', '-dc'] },
  { name: 'lz4', magic: [0x02, 0x21, 0x4c, 0x18], tool: ['lz4', '-dc'] },
];

/** Run a decompressor on a buffer and return what it printed. */
export function decompressWith(tool: string[], input: Buffer, what: string): Buffer {
  const r = spawnSync(tool[0]!, tool.slice(1), { input, maxBuffer: 1 << 30 });
  if (r.error) {
    throw new Error(`vjail vm: cannot run ${tool[0]} to unpack ${what} (${r.error.message}); install it (apt-get install ${tool[0] === 'xz' ? 'xz-utils' : tool[0]})`);
  }
  if (r.status !== 0) {
    throw new Error(`vjail vm: ${tool[0]} failed on ${what}: ${r.stderr.toString().trim().split('\n')[0]}`);
  }
  return r.stdout;
}

/**
 * Extract the uncompressed ELF vmlinux from an x86 bzImage. The setup header
 * (Documentation/arch/x86/boot.rst) tells where the compressed payload lies;
 * its first bytes tell the format. The uncompressed ELF carries the PVH entry
 * note, which lets qemu boot it directly without the real-mode setup code.
 */
export function extractVmlinux(bzImage: Buffer): Buffer {
  if (bzImage.length < 0x260 || bzImage.toString('latin1', 0x202, 0x206) !== 'HdrS') {
    throw new Error('vjail vm: not an x86 bzImage (no "HdrS" setup header)');
  }
  const setupSects = bzImage[0x1f1] || 4;
  const payloadOffset = bzImage.readUInt32LE(0x248);
  const payloadLength = bzImage.readUInt32LE(0x24c);
  const start = (setupSects + 1) * 512 + payloadOffset;
  const payload = bzImage.subarray(start, start + payloadLength);
  if (payload.length !== payloadLength || payloadLength < 16) {
    throw new Error('vjail vm: bzImage payload lies outside the file; the image is truncated');
  }
  const fmt = FORMATS.find((f) => f.magic.every((b, i) => payload[i] === b));
  if (!fmt) throw new Error(`vjail vm: bzImage payload has an unknown compression (magic ${payload.subarray(0, 4).toString('hex')})`);
  let out: Buffer;
  if (!fmt.tool) {
    out = gunzipSync(payload);
  } else {
    // The build appends the uncompressed size as 4 bytes after the stream;
    // the decompressors would take them for a damaged second stream.
    out = decompressWith(fmt.tool, payload.subarray(0, payload.length - 4), `the ${fmt.name} kernel payload`);
  }
  if (out.readUInt32BE(0) !== 0x7f454c46) throw new Error(`vjail vm: the ${fmt.name} payload of the bzImage is not an ELF file`);
  return out;
}

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';
import { IMAGE_VERSION } from '../src/image/schema.js';

/*
 * An image as a boundary: it carries the policy its jail ran under (not a
 * path whose file may change), and one that no key of the restoring user
 * vouches for restores only under a policy the user names, or with
 * --trust-image. The workload (escape mkdir-when) makes a directory the
 * policy denies once told to, after its restore.
 */

let escape: string;
let dir: string;
const denyMkdir = JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] });
const allowAll = JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW' });

beforeAll(() => {
  escape = fixture('escape');
  dir = mkdtempSync(join(tmpdir(), 'vjail-trust-'));
});

afterAll(async () => {
  await execa('rm', ['-rf', dir]);
});

/** Checkpoint a jail run under `policyFile` whose process will mkdir `target` once `go` exists; the image's path. */
async function imageOf(name: string, policyFile: string, checkpointFlags: string[] = []): Promise<{ image: string; go: string; target: string }> {
  const go = join(dir, `${name}.go`);
  const target = join(dir, `${name}.made`);
  const image = join(dir, `${name}.img`);
  const run = vjailStart(['run', '--policy', policyFile, '--', escape, 'mkdir-when', go, target]);
  expect(await waitFor(() => pidOf([escape, 'mkdir-when', go, target]) !== undefined, 30_000)).toBe(true);
  const cp = await vjail(['checkpoint', '-q', '--pid', String(pidOf([escape, 'mkdir-when', go, target])), '--image', image, ...checkpointFlags]);
  expect(cp.stderr).toBe('');
  expect(cp.exitCode).toBe(0);
  expect((await run).exitCode).toBe(137);
  writeFileSync(go, '');
  return { image, go, target };
}

/** Rewrite the image's manifest with `change`, its checksum recomputed, as an attacker with write access would. */
function tamper(image: string, change: (m: Record<string, unknown>) => void): void {
  const m = JSON.parse(readFileSync(join(image, 'manifest.json'), 'utf8'));
  change(m);
  const text = `${JSON.stringify(m)}\n`;
  writeFileSync(join(image, 'manifest.json'), text);
  writeFileSync(join(image, 'IMAGE'), `vjail-image ${IMAGE_VERSION}\nmanifest sha256:${createHash('sha256').update(text).digest('hex')}\n`);
}

const stripPolicy = (m: Record<string, unknown>): void => {
  m.policy = null;
  m.policyText = null;
};

describe('an image carries its policy', () => {
  it('the policy file changed after the checkpoint changes nothing: the restored jail is still denied', async () => {
    const policy = join(dir, 'carried.json');
    writeFileSync(policy, denyMkdir);
    const { image, target } = await imageOf('carried', policy);
    writeFileSync(policy, allowAll);
    const r = await vjail(['restore', image]);
    expect(r.stdout).toBe('errno=EPERM (mkdir)');
    expect(r.stderr).toMatch(/policy in force: the image's own copy of .*carried\.json \(signed on this machine\)/);
    expect(existsSync(target)).toBe(false);
  });
});

describe('a restored jail checkpointed again', () => {
  it('its image carries the copy it ran under, not what the file holds by then', async () => {
    const policy = join(dir, 'hop.json');
    writeFileSync(policy, denyMkdir);
    const go = join(dir, 'hop.go');
    const target = join(dir, 'hop.made');
    const first = join(dir, 'hop-1.img');
    const argv = [escape, 'mkdir-when', go, target];
    const run = vjailStart(['run', '--policy', policy, '--', ...argv]);
    expect(await waitFor(() => pidOf(argv) !== undefined, 30_000)).toBe(true);
    expect((await vjail(['checkpoint', '-q', '--pid', String(pidOf(argv)), '--image', first])).exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    writeFileSync(policy, allowAll);
    const restored = vjailStart(['restore', first]);
    expect(await waitFor(() => pidOf(argv) !== undefined, 30_000)).toBe(true);
    const second = join(dir, 'hop-2.img');
    const cp = await vjail(['checkpoint', '-q', '--pid', String(pidOf(argv)), '--image', second]);
    expect(cp.stderr).toBe('');
    expect((await restored).exitCode).toBe(137);
    const m = JSON.parse(readFileSync(join(second, 'manifest.json'), 'utf8'));
    expect(m.policyText).toBe(denyMkdir);
    writeFileSync(go, '');
    const r = await vjail(['restore', second]);
    expect(r.stdout).toBe('errno=EPERM (mkdir)');
    expect(existsSync(target)).toBe(false);
  });
});

describe('an image no key vouches for', () => {
  it('stripped of its policy with its checksum recomputed: refused in one line, the policy not lifted', async () => {
    const policy = join(dir, 'stripped.json');
    writeFileSync(policy, denyMkdir);
    const { image, target } = await imageOf('stripped', policy);
    tamper(image, stripPolicy);
    const r = await vjail(['restore', image]);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/is not authenticated \(its signature does not verify here.*\), so the policy it names cannot be trusted; restore it under a policy you name with --policy FILE, check it with --verify-key FILE, or accept it as it is with --trust-image$/)]);
    expect(r.exitCode).toBe(2);
    expect(existsSync(target)).toBe(false);
    // The user names the policy: that one is enforced.
    const named = await vjail(['restore', '--policy', policy, image]);
    expect(named.stderr).toMatch(/policy in force: .*stripped\.json \(named with --policy; the image's own is not used\)/);
    expect(named.stdout).toBe('errno=EPERM (mkdir)');
    expect(existsSync(target)).toBe(false);
  });

  it('--trust-image restores it as it is, and says that no policy is in force', async () => {
    const policy = join(dir, 'trusted.json');
    writeFileSync(policy, denyMkdir);
    const { image, target } = await imageOf('trusted', policy);
    tamper(image, stripPolicy);
    const r = await vjail(['restore', '--trust-image', image]);
    expect(r.stderr).toMatch(/policy in force: none, as the image says \(not authenticated; --trust-image\)/);
    expect(r.stdout).toBe('ok');
    expect(existsSync(target)).toBe(true);
  });
});

describe('checkpoint --sign-key and restore --verify-key', () => {
  const keys = (): { priv: string; pub: string; other: string; hmac: string } => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const priv = join(dir, 'ed25519.pem');
    const pub = join(dir, 'ed25519.pub.pem');
    const other = join(dir, 'other.pub.pem');
    const hmac = join(dir, 'hmac.key');
    writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(other, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(hmac, randomBytes(32));
    return { priv, pub, other, hmac };
  };

  it('Ed25519: the signed image restores under --verify-key; another key, or a tampered copy, is refused', async () => {
    const k = keys();
    const policy = join(dir, 'signed.json');
    writeFileSync(policy, denyMkdir);
    const { image, target } = await imageOf('signed', policy, ['--sign-key', k.priv]);
    const wrong = await vjail(['restore', '--verify-key', k.other, image]);
    expect(wrong.stderr.trim().split('\n')).toEqual([expect.stringMatching(/is not signed by --verify-key .*other\.pub\.pem \(its signature does not verify/)]);
    expect(wrong.exitCode).toBe(2);
    const copy = `${image}.tampered`;
    cpSync(image, copy, { recursive: true });
    tamper(copy, stripPolicy);
    const forged = await vjail(['restore', '--verify-key', k.pub, copy]);
    expect(forged.stderr).toMatch(/is not signed by --verify-key/);
    expect(forged.exitCode).toBe(2);
    expect(existsSync(target)).toBe(false);
    expect((await vjail(['inspect', image])).stdout).toMatch(/^trust {5}signed on this machine; signed with a key too \(ed25519: restore --verify-key checks it\)$/m);
    expect((await vjail(['inspect', copy])).stdout).toMatch(/^trust {5}not authenticated here \(its signature does not verify here: .*\): restore needs --policy, --verify-key or --trust-image; signed with a key too \(ed25519/m);
    const r = await vjail(['restore', '--verify-key', k.pub, image]);
    expect(r.stderr).toMatch(/policy in force: the image's own copy of .*signed\.json \(signed with --verify-key\)/);
    expect(r.stdout).toBe('errno=EPERM (mkdir)');
    expect(existsSync(target)).toBe(false);
  });

  it('HMAC-SHA256: the same secret verifies; an image signed without it is refused', async () => {
    const k = keys();
    const policy = join(dir, 'hmac.json');
    writeFileSync(policy, denyMkdir);
    const { image } = await imageOf('hmac', policy, ['--sign-key', k.hmac]);
    const r = await vjail(['restore', '--verify-key', k.hmac, image]);
    expect(r.stdout).toBe('errno=EPERM (mkdir)');
    const unsigned = await imageOf('unsigned', policy);
    const refused = await vjail(['restore', '--verify-key', k.hmac, unsigned.image]);
    expect(refused.stderr).toMatch(/is not signed by --verify-key .*hmac\.key/);
    expect(refused.exitCode).toBe(2);
  });

  it('a key that is neither Ed25519 nor a long enough secret is refused in one line, the jail left running', async () => {
    const short = join(dir, 'short.key');
    writeFileSync(short, 'too short');
    const rsa = join(dir, 'rsa.pem');
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const go = join(dir, 'badkey.go');
    const target = join(dir, 'badkey.made');
    const run = vjailStart(['run', '--', escape, 'mkdir-when', go, target]);
    expect(await waitFor(() => pidOf([escape, 'mkdir-when', go, target]) !== undefined, 30_000)).toBe(true);
    const pid = String(pidOf([escape, 'mkdir-when', go, target]));
    for (const [key, why] of [[short, /holds 9 bytes; an HMAC key must have at least 32$/], [rsa, /is a rsa key; vjail signs images with Ed25519 keys only$/]] as const) {
      const r = await vjail(['checkpoint', '-q', '--pid', pid, '--image', join(dir, 'badkey.img'), '--sign-key', key]);
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(why)]);
      expect(r.exitCode).toBe(2);
    }
    expect(existsSync(join(dir, 'badkey.img'))).toBe(false);
    writeFileSync(go, '');
    expect((await run).stdout).toBe('waiting\nok');
  });
});

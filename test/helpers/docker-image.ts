// A Docker image for tests, built without any registry: a root file system holding a static busybox and
// its applet symlinks (what `busybox --install -s` would make), imported with the Engine's import API.
// Idempotent: an existing image with the tag is used as is.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Docker from 'dockerode';

export const TEST_IMAGE = 'tsched-test/busybox:latest';

const BUSYBOX = process.env.TSCHED_TEST_BUSYBOX ?? '/bin/busybox';

/** True when the ELF file asks for a dynamic loader (a PT_INTERP header): such a busybox cannot run alone. */
function isDynamicElf(path: string): boolean {
  const b = readFileSync(path);
  if (b.readUInt32BE(0) !== 0x7f454c46) return true; // not ELF: treat as unusable
  const is64 = b[4] === 2;
  const le = b[5] === 1;
  const u16 = (o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const phoff = is64 ? Number(le ? b.readBigUInt64LE(0x20) : b.readBigUInt64BE(0x20)) : u32(0x1c);
  const phentsize = u16(is64 ? 0x36 : 0x2a);
  const phnum = u16(is64 ? 0x38 : 0x2c);
  for (let i = 0; i < phnum; i++) if (u32(phoff + i * phentsize) === 3) return true;
  return false;
}

/** Finds a static busybox, installing Debian's busybox-static when running as root and none is there. */
export function staticBusybox(): string {
  if (existsSync(BUSYBOX) && !isDynamicElf(BUSYBOX)) return BUSYBOX;
  if (process.getuid?.() === 0) {
    const apt = (...args: string[]) =>
      execFileSync('apt-get', args, { stdio: 'pipe', timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    try {
      apt('install', '-y', '-qq', 'busybox-static');
    } catch {
      // A fresh machine may have no package lists yet.
      apt('update', '-qq');
      apt('install', '-y', '-qq', 'busybox-static');
    }
    if (existsSync(BUSYBOX) && !isDynamicElf(BUSYBOX)) return BUSYBOX;
  }
  throw new Error(`a static busybox is needed at ${BUSYBOX} to build the test image: apt-get install -y busybox-static`);
}

async function imageExists(docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return false;
    throw e;
  }
}

/** Builds the root file system in a temporary directory: /bin/busybox, one symlink per applet, /tmp, /etc/passwd. */
async function buildRootfs(busybox: string): Promise<string> {
  const root = await fsp.mkdtemp(join(tmpdir(), 'tsched-rootfs-'));
  await fsp.mkdir(join(root, 'bin'), { recursive: true });
  await fsp.copyFile(busybox, join(root, 'bin/busybox'));
  await fsp.chmod(join(root, 'bin/busybox'), 0o755);
  const applets = execFileSync(busybox, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const rel of applets) {
    const p = join(root, rel);
    if (existsSync(p)) continue;
    await fsp.mkdir(dirname(p), { recursive: true });
    await fsp.symlink('/bin/busybox', p);
  }
  await fsp.mkdir(join(root, 'tmp'), { recursive: true });
  await fsp.chmod(join(root, 'tmp'), 0o1777);
  await fsp.mkdir(join(root, 'etc'), { recursive: true });
  await fsp.writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  await fsp.writeFile(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  return root;
}

/** Makes sure `tag` exists locally, importing a busybox root file system when it does not. Returns the tag. */
export async function ensureBusyboxImage(tag = TEST_IMAGE, docker = new Docker()): Promise<string> {
  if (await imageExists(docker, tag)) return tag;
  const root = await buildRootfs(staticBusybox());
  try {
    const tar = spawn('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tarErr = '';
    tar.stderr.on('data', (d) => {
      tarErr += d;
    });
    const tarDone = new Promise<void>((resolve, reject) =>
      tar.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar failed (${code}): ${tarErr}`)))),
    );
    const [repo, version] = splitTag(tag);
    const progress = await docker.importImage(tar.stdout, { repo, tag: version });
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(progress, (err: Error | null, out: Array<{ error?: string }>) => {
        const failed = out?.find((o) => o.error);
        if (err || failed) reject(err ?? new Error(failed?.error));
        else resolve();
      }),
    );
    await tarDone;
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
  if (!(await imageExists(docker, tag))) throw new Error(`importing ${tag} did not produce the image`);
  return tag;
}

function splitTag(ref: string): [string, string] {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
}

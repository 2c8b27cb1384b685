#!/usr/bin/env node
// Builds the native spawner helper (src/worker/spawner.c) into dist/native/tsched-spawner, part of
// `npm run build`. A worker without it still runs: spawner.ts falls back to the Perl helper, then to Node's
// spawn. So a machine without a C compiler, or whose C library lacks what the helper uses (renameat2,
// pipe2), gets a warning and the Perl helper, not a failed build. The spawner tests fail under CI=true when
// the native helper is missing, so CI still sees a source that does not compile.

import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../src/worker/spawner.c', import.meta.url));
const dir = fileURLToPath(new URL('../dist/native/', import.meta.url));
const out = `${dir}tsched-spawner`;

if (process.platform !== 'linux') process.exit(0); // the helper is Linux-only, like the spawner

const candidates = process.env.CC ? [process.env.CC] : ['cc', 'gcc', 'clang'];
const cc = candidates.find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
if (!cc) {
  console.warn(
    'build-spawner: no C compiler (cc, gcc or clang; or set CC), so the worker uses the Perl spawner helper; install one (Debian: apt-get install gcc) for the faster native helper',
  );
  process.exit(0);
}
mkdirSync(dir, { recursive: true });
// Built under a temporary name and renamed, so that a running worker never execs a half-written file.
const built = spawnSync(cc, ['-O2', '-Wall', '-Wextra', '-std=c11', '-o', `${out}.tmp`, src], { stdio: 'inherit' });
if (built.status !== 0) {
  rmSync(`${out}.tmp`, { force: true });
  rmSync(out, { force: true }); // never leave an older build behind to run in its place
  console.warn(`build-spawner: ${cc} could not build ${src} (above), so the worker uses the Perl spawner helper`);
  process.exit(0);
}
renameSync(`${out}.tmp`, out);

#!/usr/bin/env node
// Builds the native spawner helper (src/worker/spawner.c) into dist/native/tsched-spawner, part of
// `npm run build`. A worker without it still runs: spawner.ts falls back to the Perl helper, then to Node's
// spawn. So a machine without a C compiler gets a notice, not a failed build; a compiler that rejects the
// source fails the build, because that is a bug to see, not to hide.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, renameSync } from 'node:fs';
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
execFileSync(cc, ['-O2', '-Wall', '-Wextra', '-Werror', '-std=c11', '-o', `${out}.tmp`, src], { stdio: 'inherit' });
renameSync(`${out}.tmp`, out);

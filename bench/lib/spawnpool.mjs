// Run a command many times with a bounded number in flight: the shared building block of the raw spawn
// measure and of the peers' /bin/true handlers.

import { spawn } from 'node:child_process';

/** Spawn `cmd` once and resolve with its exit code; reject when it cannot start or fails. */
export function runOnce(cmd = '/bin/true', args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(code);
      else reject(new Error(`${cmd} exited with ${code ?? signal}`));
    });
  });
}

/** Run `cmd` n times with at most `inflight` at once. Resolves with the number of successful runs. */
export async function spawnMany(n, inflight, cmd = '/bin/true') {
  let next = 0;
  let done = 0;
  async function lane() {
    while (next < n) {
      next++;
      await runOnce(cmd);
      done++;
    }
  }
  await Promise.all(Array.from({ length: Math.min(inflight, n) }, lane));
  return done;
}

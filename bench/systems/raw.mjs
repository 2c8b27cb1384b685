// The physical limit of the real-execution suite: two processes spawning /bin/true as fast as they can,
// `inflight` at once each, with no queue at all.

import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { forkChild, killChild, waitFor } from '../lib/procs.mjs';

const RAW = fileURLToPath(new URL('../workers/raw-spawn.mjs', import.meta.url));

export const name = 'raw';
export const label = 'raw spawn';
export const backend = '—';

export async function reset() {}

export async function exec({ n, inflight, processes }) {
  const children = Array.from({ length: processes }, () => forkChild(RAW));
  try {
    await Promise.all(children.map((c) => waitFor(c, 'ready')));
    const shares = children.map((_, k) => Math.floor(n / processes) + (k < n % processes ? 1 : 0));
    const t0 = performance.now();
    const finished = children.map((c) => waitFor(c, 'finished', 600_000));
    children.forEach((c, k) => {
      c.send({ type: 'go', n: shares[k], inflight });
    });
    const counts = await Promise.all(finished);
    const sec = (performance.now() - t0) / 1000;
    const total = counts.reduce((a, m) => a + m.count, 0);
    if (total !== n) throw new Error(`raw: ${total} of ${n} spawns succeeded`);
    return { n, sec, perSec: n / sec };
  } finally {
    await Promise.all(children.map((c) => killChild(c)));
  }
}

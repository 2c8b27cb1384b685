// Suite 2, real execution: every task runs /bin/true. Peers: n jobs are submitted first (untimed), then
// two worker processes, each with `inflight` handlers spawning /bin/true, drain them; the clock runs from
// `go` to the last completion. Systems with their own process layout (raw spawn, tsched) export exec().

import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { forkChild, killChild, waitFor } from '../lib/procs.mjs';
import { checkExactlyOnce } from '../lib/stats.mjs';

const WORKER = fileURLToPath(new URL('../workers/exec-worker.mjs', import.meta.url));

export async function runExec(system, { n, inflight, processes, chunk }) {
  if (system.exec) return system.exec({ n, inflight, processes, chunk });
  await system.execSubmit({ n, chunk });
  const children = Array.from({ length: processes }, () => forkChild(WORKER, [system.name, String(inflight)]));
  try {
    await Promise.all(children.map((c) => waitFor(c, 'ready')));
    const counts = new Map();
    let done = 0;
    let finish;
    const all = new Promise((r) => {
      finish = r;
    });
    for (const c of children) {
      c.on('message', (msg) => {
        if (msg.type !== 'done') return;
        for (const i of msg.ids) counts.set(i, (counts.get(i) ?? 0) + 1);
        done += msg.ids.length;
        if (done >= n) finish();
      });
    }
    const t0 = performance.now();
    for (const c of children) c.send({ type: 'go' });
    await all;
    const sec = (performance.now() - t0) / 1000;
    for (const c of children) c.send({ type: 'stop' });
    await Promise.all(children.map((c) => waitFor(c, 'stopped', 30_000)));
    await system.execVerify({ n });
    checkExactlyOnce(
      counts,
      Array.from({ length: n }, (_, i) => i),
      system.name,
    );
    return { n, sec, perSec: n / sec };
  } finally {
    await Promise.all(children.map((c) => killChild(c)));
  }
}

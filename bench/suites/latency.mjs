// Suite 3, latency: open-loop submission of single tasks at a fixed rate; submit-to-start is measured
// from each task's scheduled send time to the moment its handler (or the simulated worker) receives it.
// Every system first gets `warmupMs` of unmeasured sends at the same rate (their own indexes, after the
// measured ones): a service is measured warm, as it runs, not in the first second of a cold process
// (JIT compilation, connection pools and keep-alive sockets still opening).

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { openLoop } from '../lib/openloop.mjs';
import { latencySummary } from '../lib/stats.mjs';

/** p50 / p90 of the submit's answer (from its scheduled send) and of the start after that answer. */
export function splitLatency(scheduled, answered, started) {
  const toAnswer = [];
  const afterAnswer = [];
  for (let i = 0; i < scheduled.length; i++) {
    toAnswer.push(answered[i] - scheduled[i]);
    afterAnswer.push(started[i] - answered[i]);
  }
  const a = latencySummary(toAnswer);
  const b = latencySummary(afterAnswer);
  const f = (v) => v.toFixed(1);
  return `submit answered p50 / p90 ${f(a.p50)} / ${f(a.p90)} ms; start after the answer p50 / p90 ${f(b.p50)} / ${f(b.p90)} ms`;
}

export async function runLatency(system, opts) {
  const { rate, durationMs, settleMs = 30_000, warmupMs = 0 } = opts;
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const scheduled = new Float64Array(total).fill(Number.NaN);
  const started = new Float64Array(total).fill(Number.NaN);
  // When each submit was answered: with TSCHED_BENCH_STATS, the latency splits into the submit's own
  // answer and what came after it (for tsched: the wait for a worker's poll to carry the assignment).
  const answered = new Float64Array(total).fill(Number.NaN);
  let startedCount = 0;
  let duplicates = 0;
  let warmStarted = 0;
  const onStart = (i) => {
    if (i >= total) {
      warmStarted++;
      return;
    }
    if (!Number.isNaN(started[i])) {
      duplicates++;
      return;
    }
    started[i] = performance.now();
    startedCount++;
  };
  const harness = await system.latencyHarness({ ...opts, onStart });
  let errors = [];
  try {
    if (warmupMs > 0) {
      const warm = await openLoop({ rate, durationMs: warmupMs, send: (i) => harness.send(total + i) });
      if (warm.errors.length)
        throw new Error(`${system.name}: ${warm.errors.length} warm-up submits failed, first: ${warm.errors[0]?.message}`);
      const deadline = performance.now() + settleMs;
      while (warmStarted < warm.total && performance.now() < deadline) await sleep(5);
    }
    ({ errors } = await openLoop({
      rate,
      durationMs,
      send: (i, at) => {
        scheduled[i] = at;
        return harness.send(i).then((v) => {
          answered[i] = performance.now();
          return v;
        });
      },
    }));
    const deadline = performance.now() + settleMs;
    while (startedCount < total && performance.now() < deadline) await sleep(5);
  } finally {
    await harness.close();
  }
  if (errors.length) throw new Error(`${system.name}: ${errors.length} submits failed, first: ${errors[0]?.message}`);
  if (duplicates) throw new Error(`${system.name}: ${duplicates} tasks started twice`);
  if (startedCount < total) throw new Error(`${system.name}: only ${startedCount} of ${total} tasks started within ${settleMs} ms`);
  const lat = Array.from({ length: total }, (_, i) => started[i] - scheduled[i]);
  if (process.env.TSCHED_BENCH_STATS) console.error(`${system.name} at ${rate}/s: ${splitLatency(scheduled, answered, started)}`);
  return { rate, durationMs, warmupMs, sent: total, ...latencySummary(lat) };
}

// Suite 1, control-plane throughput: N no-op tasks submitted in bulk, then drained at in-flight
// concurrency c. Submission and drain are timed apart; every id must complete exactly once.

import { checkExactlyOnce } from '../lib/stats.mjs';

export async function runThroughput(system, opts) {
  const { n } = opts;
  const counts = new Map();
  const onComplete = (i) => counts.set(i, (counts.get(i) ?? 0) + 1);
  const { submitSec, drainSec, extra } = await system.throughput({ ...opts, onComplete });
  checkExactlyOnce(
    counts,
    Array.from({ length: n }, (_, i) => i),
    system.name,
  );
  return { n, submitSec, drainSec, submitsPerSec: n / submitSec, completionsPerSec: n / drainSec, ...extra };
}

// Open-loop load at a fixed rate: sends are scheduled by the clock, not by responses, so a slow system
// cannot hide its latency by slowing the sender down (no coordinated omission). Latency is measured from
// the *scheduled* send time.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Fire `send(i, scheduledAt)` for i = 0..total-1 at `rate` per second, without awaiting each send.
 * scheduledAt is on the performance.now() clock. Resolves when every send has settled; returns the errors.
 */
export async function openLoop({ rate, durationMs, send, startDelayMs = 20 }) {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const interval = 1000 / rate;
  const t0 = performance.now() + startDelayMs;
  const pending = [];
  const errors = [];
  let i = 0;
  while (i < total) {
    const now = performance.now();
    while (i < total && t0 + i * interval <= now) {
      const k = i;
      const scheduledAt = t0 + k * interval;
      pending.push(
        Promise.resolve()
          .then(() => send(k, scheduledAt))
          .catch((err) => {
            errors.push(err);
          }),
      );
      i++;
    }
    if (i >= total) break;
    const wait = t0 + i * interval - performance.now();
    // setTimeout has ~1 ms granularity: sleep only when the next send is far enough away.
    // Sleep, never spin: a sender that polls with setImmediate burns a core of its own (78 % of one at
    // 1,000/s), stolen from the system measured on this 2-core machine. Timers fire in whole ms, so a send
    // may go out up to ~1 ms late; that lateness counts in the latency, the same for every system.
    await sleep(Math.max(1, wait - 1));
  }
  await Promise.all(pending);
  return { total, t0, errors };
}

// Open-loop load at a fixed rate: sends are scheduled by the clock, not by responses, so a slow system
// cannot hide its latency by slowing the sender down (no coordinated omission). Latency is measured from
// the *scheduled* send time.

import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

// The clock runs in a thread of its own that sleeps until each send is due (Atomics.wait takes fractions of
// a millisecond) and tells the main thread, whose event loop stays free to read responses. Polling the clock
// on the main thread (setImmediate) burned a core of its own at 1,000/s, taken from the system measured on a
// 2-core machine; sleeping there with timers (whole milliseconds) sent ~1 ms late on average.
// The start time comes in a message once the thread runs: starting a thread took ~50 ms on a slow machine,
// and a schedule fixed before it would have sent the first sends up to that late.
const TICKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { interval, total } = workerData;
const nap = new Int32Array(new SharedArrayBuffer(4));
const now = () => performance.timeOrigin + performance.now();
parentPort.once('message', (startAt) => {
  let i = 0;
  while (i < total) {
    const wait = startAt + i * interval - now();
    if (wait > 0) {
      Atomics.wait(nap, 0, 0, wait);
      continue;
    }
    const t = now();
    let j = i + 1;
    while (j < total && startAt + j * interval <= t) j++;
    parentPort.postMessage(j);
    i = j;
  }
  parentPort.close();
});
`;

/**
 * Fire `send(i, scheduledAt)` for i = 0..total-1 at `rate` per second, without awaiting each send.
 * scheduledAt is on the performance.now() clock. Resolves when every send has settled; returns the errors.
 */
export async function openLoop({ rate, durationMs, send, startDelayMs = 20 }) {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const interval = 1000 / rate;
  const pending = [];
  const errors = [];
  let i = 0;
  const ticker = new Worker(TICKER, { eval: true, workerData: { interval, total } });
  await new Promise((resolve, reject) => {
    ticker.once('online', resolve);
    ticker.once('error', reject);
  });
  const t0 = performance.now() + startDelayMs;
  // Both threads read the same clock as timeOrigin + now(); each origin is rounded to a microsecond, so the
  // thread starts 5 µs late rather than risk a send before its time.
  ticker.postMessage(performance.timeOrigin + t0 + 0.005);
  await new Promise((resolve, reject) => {
    ticker.on('message', (upTo) => {
      for (; i < upTo; i++) {
        const k = i;
        const scheduledAt = t0 + k * interval;
        pending.push(
          Promise.resolve()
            .then(() => send(k, scheduledAt))
            .catch((err) => {
              errors.push(err);
            }),
        );
      }
      if (i >= total) resolve();
    });
    ticker.on('error', reject);
    ticker.on('exit', (code) =>
      i >= total ? resolve() : reject(new Error(`open-loop clock exited (${code}) after ${i} of ${total} sends`)),
    );
  });
  await Promise.all(pending);
  return { total, t0, errors };
}

// A simulated tsched worker that speaks the real worker protocol over HTTP: it registers with room for
// exactly `slots` bench tasks (1 core and 1 MiB each), long-polls for up to `slots` assignments, and
// completes each one at once: a batched report of `succeeded` results, riding on a poll that does not wait
// while a long poll stays parked, as the real agent does. The control plane does all the
// work it would do for real tasks; only the process spawn is left out.

import { api } from './tsched-http.mjs';

export const TASK_RESOURCES = { cpus: 1, memory: '1Mi' };
const MiB = 1024 * 1024;

export class SimWorker {
  constructor({ url, workerToken, name, slots, onAssign, waitMs = 1000 }) {
    Object.assign(this, { url, workerToken, name, slots, onAssign, waitMs });
    this.stopped = false;
    this.acked = 0;
    this.refused = [];
  }

  async register() {
    const res = await api(this.url, this.workerToken, 'POST', '/v1/workers/register', {
      name: this.name,
      capacity: { cpus: this.slots * 1000, memory: this.slots * MiB, ports: null },
      executors: ['shell'],
      version: 'bench',
    });
    this.id = res.worker.id;
    return this;
  }

  /**
   * Two loops, as the real agent (src/worker/agent.ts) runs them: a long poll stays parked for work that
   * arrives on its own, and each batch of results rides on a poll that does not wait, so the work those
   * results made room for comes back in its response. Every assignment is completed at once. A run already
   * in hand is ignored, as the agent does (both requests may carry work). Until stop(); a last report goes
   * out on its own.
   */
  async run() {
    this.inHand = new Set();
    this.results = [];
    this.wakeReporter = null;
    await Promise.all([this.pollLoop(), this.reportLoop()]);
  }

  accept(assignments) {
    const now = Date.now();
    for (const a of assignments) {
      if (this.inHand.has(a.runId)) continue;
      this.inHand.add(a.runId);
      this.onAssign(a);
      this.results.push({
        runId: a.runId,
        token: a.token,
        outcome: 'succeeded',
        exitCode: 0,
        reason: null,
        startedAt: now,
        finishedAt: now,
      });
    }
    if (this.results.length > 0) this.wakeReporter?.();
  }

  async pollLoop() {
    const path = `/v1/workers/${encodeURIComponent(this.id)}/poll`;
    while (!this.stopped)
      this.accept((await api(this.url, this.workerToken, 'POST', path, { max: this.slots, wait: this.waitMs })).assignments);
  }

  async reportLoop() {
    const path = `/v1/workers/${encodeURIComponent(this.id)}/poll`;
    for (;;) {
      if (this.results.length === 0) {
        if (this.stopped) break;
        await new Promise((r) => {
          this.wakeReporter = r;
        });
        this.wakeReporter = null;
        continue;
      }
      const results = this.results.splice(0);
      const body = this.stopped ? { results } : { max: this.slots, wait: 0, results };
      const res = await api(
        this.url,
        this.workerToken,
        'POST',
        this.stopped ? `/v1/workers/${encodeURIComponent(this.id)}/report` : path,
        body,
      );
      for (const r of results) this.inHand.delete(r.runId);
      this.count(res.results);
      if (res.assignments) this.accept(res.assignments);
    }
  }

  count(acks) {
    for (const ack of acks) {
      if (ack.ok) this.acked++;
      else this.refused.push(ack);
    }
    this.onReported?.();
  }

  stop() {
    this.stopped = true;
    this.wakeReporter?.();
  }
}

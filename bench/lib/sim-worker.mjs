// A simulated tsched worker that speaks the real worker protocol over HTTP: it registers with room for
// exactly `slots` bench tasks (1 core and 1 MiB each), long-polls for up to `slots` assignments, and
// completes each one at once: a batched report of `succeeded` results, riding on the next poll. The control plane does all the
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
   * Poll, complete, and report the results on the next poll (the protocol lets a report ride on a poll, as
   * the real agent does when results are waiting): one request per cycle. Until stop(); a last report
   * goes out on its own.
   */
  async run() {
    let results = [];
    while (!this.stopped) {
      const poll = await api(this.url, this.workerToken, 'POST', `/v1/workers/${encodeURIComponent(this.id)}/poll`, {
        max: this.slots,
        wait: this.waitMs,
        ...(results.length > 0 ? { results } : {}),
      });
      if (results.length > 0) this.count(poll.results);
      const now = Date.now();
      results = poll.assignments.map((a) => {
        this.onAssign(a);
        return { runId: a.runId, token: a.token, outcome: 'succeeded', exitCode: 0, reason: null, startedAt: now, finishedAt: now };
      });
    }
    if (results.length > 0) {
      const rep = await api(this.url, this.workerToken, 'POST', `/v1/workers/${encodeURIComponent(this.id)}/report`, { results });
      this.count(rep.results);
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
  }
}

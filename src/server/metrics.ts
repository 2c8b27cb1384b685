// Prometheus metrics (prom-client), served at /metrics. Counters are incremented at the edges where the
// events happen; gauges of task counts are read from the store when scraped.

import client from 'prom-client';
import type { Store } from '../store/port.js';

export class Metrics {
  readonly registry = new client.Registry();
  readonly submitted = new client.Counter({ name: 'tsched_tasks_submitted_total', help: 'Tasks accepted', registers: [this.registry] });
  readonly runsFinished = new client.Counter({
    name: 'tsched_runs_finished_total',
    help: 'Runs ended, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly placed = new client.Counter({
    name: 'tsched_placements_total',
    help: 'Runs created by the scheduler',
    registers: [this.registry],
  });
  readonly deadlineMissed = new client.Counter({
    name: 'tsched_deadline_missed_total',
    help: 'Tasks that passed their start deadline without starting',
    registers: [this.registry],
  });
  readonly occurrencesMissed = new client.Counter({
    name: 'tsched_occurrences_missed_total',
    help: 'Recurring occurrences recorded as missed (downtime, overlap skip)',
    registers: [this.registry],
  });
  readonly passSeconds = new client.Histogram({
    name: 'tsched_scheduler_pass_seconds',
    help: 'Duration of scheduling passes',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly notificationsSent = new client.Counter({
    name: 'tsched_notifications_total',
    help: 'Webhook deliveries, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor(store: Store) {
    const reg = this.registry;
    new client.Gauge({
      name: 'tsched_tasks',
      help: 'Tasks by status',
      labelNames: ['status'] as const,
      registers: [reg],
      async collect() {
        const counts = await store.countTasks(null);
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });
    client.collectDefaultMetrics({ register: reg, prefix: 'tsched_process_' });
  }
}

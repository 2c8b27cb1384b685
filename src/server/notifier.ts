// Delivers the webhook outbox: claims due notifications (so replicas never send the same one at the same
// time), posts them signed, and settles each — delivered, retried with backoff, or given up after
// `maxAttempts`. Delivery is at-least-once; receivers dedupe on X-Tsched-Delivery.

import type { Logger } from 'pino';
import type { Store } from '../store/port.js';
import type { Metrics } from './metrics.js';
import { deliver, nextDeliveryDelay } from './webhooks.js';

export class Notifier {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private stopped = false;

  constructor(
    private deps: {
      store: Store;
      secret: string;
      log: Logger;
      metrics?: Metrics;
      now: () => Promise<number>;
      intervalMs?: number;
      maxAttempts?: number;
    },
  ) {}

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      const { store } = this.deps;
      const now = await this.deps.now();
      const batch = await store.claimNotifications(now, 50, 60_000);
      await Promise.all(
        batch.map(async (n) => {
          const r = await deliver({ id: n.id, url: n.url, event: n.event, payload: n.payload }, this.deps.secret, Date.now());
          const t = await this.deps.now();
          const giveUp = !r.ok && n.attempts >= (this.deps.maxAttempts ?? 10);
          await store.settleNotification(n.id, {
            ok: r.ok,
            now: t,
            retryAt: r.ok || giveUp ? null : t + nextDeliveryDelay(n.attempts),
            error: r.ok ? null : (r.error ?? `HTTP ${r.status}`),
          });
          this.deps.metrics?.notificationsSent.inc({ result: r.ok ? 'delivered' : giveUp ? 'given_up' : 'retry' });
          if (!r.ok)
            this.deps.log.warn(
              { url: n.url, event: n.event, attempt: n.attempts, status: r.status, error: r.error },
              'webhook delivery failed',
            );
        }),
      );
    } catch (err) {
      this.deps.log.warn({ err }, 'notifier tick failed');
    } finally {
      this.busy = false;
    }
  }
}

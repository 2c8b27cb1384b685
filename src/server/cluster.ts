// `tsched server --db postgres://…`: one replica of the control plane on a shared PostgreSQL. Every replica
// serves the API and the workers; the store's transactional re-check of every plan keeps allocations
// within capacity whichever replica applies it.

import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { openStore } from '../store/index.js';
import { hashToken, newToken } from './auth.js';
import type { ServerConfig } from './config.js';
import { type ControlPlane, defaultLogger, startControlPlane } from './control-plane.js';
import { PgBus } from './pg-bus.js';
import { PgLeadership } from './pg-leadership.js';

export interface ClusterOptions {
  db: string;
  /** host:port to listen on; default 0.0.0.0:7420. */
  listen?: string;
  port?: number;
  host?: string;
  /** The URL workers and clients use to reach this replica (behind a load balancer: the balancer's). */
  advertiseUrl?: string;
  /** Bootstrap tokens (e.g. from TSCHED_ADMIN_TOKEN / TSCHED_WORKER_TOKEN): registered at start, idempotently. */
  adminToken?: string;
  workerToken?: string;
  /** HMAC key for webhook signatures (TSCHED_WEBHOOK_SECRET); the same on every replica. */
  webhookSecret?: string;
  config?: Partial<ServerConfig>;
  log?: Logger;
  /** Leader lease length and renewal period, ms (defaults 3000 and 1000): failover takes about ttl + renew. */
  leaderTtlMs?: number;
  leaderRenewMs?: number;
  /** Pool size and per-statement timeout of this replica's PostgreSQL connections. */
  maxConnections?: number;
  statementTimeoutMs?: number;
}

export interface ClusterServer {
  url: string;
  /** The admin token given (or generated on first start when none was given and none exists). */
  token: string | null;
  workerToken: string | null;
  plane: ControlPlane;
  close(): Promise<void>;
}

export function parseListen(listen: string | undefined, fallbackPort: number): { host: string; port: number } {
  if (!listen) return { host: '0.0.0.0', port: fallbackPort };
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen);
  if (!m) {
    if (/^\d+$/.test(listen)) return { host: '0.0.0.0', port: Number(listen) };
    throw new Error(`--listen: expected host:port such as 0.0.0.0:7420, got "${listen}"`);
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

export async function startServer(opts: ClusterOptions): Promise<ClusterServer> {
  const log = opts.log ?? defaultLogger();
  const store = await openStore({
    url: opts.db,
    ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
    ...(opts.statementTimeoutMs !== undefined ? { statementTimeoutMs: opts.statementTimeoutMs } : {}),
  });
  try {
    await store.migrate();
    const token = opts.adminToken ?? null;
    const workerToken = opts.workerToken ?? null;
    if (token) await store.putToken({ tokenHash: hashToken(token), userId: 'admin', role: 'admin', name: 'bootstrap admin' });
    if (workerToken)
      await store.putToken({ tokenHash: hashToken(workerToken), userId: 'worker', role: 'worker', name: 'bootstrap workers' });
    const { host, port } = opts.listen ? parseListen(opts.listen, 7420) : { host: opts.host ?? '0.0.0.0', port: opts.port ?? 7420 };
    const webhookSecret = opts.webhookSecret ?? process.env.TSCHED_WEBHOOK_SECRET ?? '';
    // The replica's name in the leader row: where it answers, and which process it is.
    let replica = `${opts.advertiseUrl ?? `${host}:${port}`} (${hostname()} pid ${process.pid})`;
    const leadership = new PgLeadership({
      store,
      holder: () => replica,
      ttlMs: opts.leaderTtlMs,
      renewMs: opts.leaderRenewMs,
      log,
    });
    const u = new URL(opts.db);
    const schema = u.searchParams.get('schema') ?? 'public';
    u.searchParams.delete('schema');
    const bus = new PgBus({ url: u.toString(), schema, log });
    const plane = await startControlPlane({
      store,
      host,
      port,
      log,
      config: { webhookSecret, ...opts.config },
      leadership,
      bus,
      onListening: (url) => {
        replica = `${opts.advertiseUrl ?? url} (${hostname()} pid ${process.pid})`;
      },
    });
    return {
      url: opts.advertiseUrl ?? plane.url,
      token,
      workerToken,
      plane,
      close: async () => {
        await plane.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}

export { newToken };

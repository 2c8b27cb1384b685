// `tsched up`: one process runs the API, the scheduler and a local worker, with SQLite under the data
// directory. The local worker speaks the same HTTP protocol a remote worker does, over loopback.

import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { openStore } from '../store/index.js';
import type { ServerConfig } from './config.js';
import { type ControlPlane, defaultLogger, startControlPlane } from './control-plane.js';
import { ensureCredentials } from './credentials.js';

export interface EmbeddedOptions {
  port?: number;
  host?: string;
  dataDir: string;
  /** Local worker size: cores and bytes. Default: the host's. */
  cpus?: number;
  memory?: number;
  executors?: Array<'shell' | 'docker'>;
  /** Ports the local worker hands out. */
  ports?: { from: number; to: number } | null;
  /** Run a local worker (default true). */
  localWorker?: boolean;
  config?: Partial<ServerConfig>;
  log?: Logger;
}

export interface Embedded {
  url: string;
  token: string;
  workerToken: string;
  dataDir: string;
  dbPath: string;
  plane: ControlPlane;
  close(): Promise<void>;
}

export async function startEmbedded(opts: EmbeddedOptions): Promise<Embedded> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const dbPath = join(dataDir, 'tsched.db');
  const log = opts.log ?? defaultLogger();
  const store = await openStore({ url: `sqlite:${dbPath}` });
  let plane: ControlPlane | undefined;
  try {
    await store.migrate();
    const creds = await ensureCredentials(store, dataDir);
    plane = await startControlPlane({
      store,
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 7420,
      log,
      config: { webhookSecret: creds.webhookSecret, ...opts.config },
    });
    let worker: { stop(o?: { drainTimeoutMs?: number }): Promise<void> } | undefined;
    if (opts.localWorker !== false) {
      const { startWorker } = await import('../worker/agent.js');
      worker = await startWorker({
        server: plane.url,
        token: creds.workerToken,
        name: `${hostname()}-local`,
        workDir: join(dataDir, 'work'),
        ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}),
        ...(opts.memory !== undefined ? { memory: opts.memory } : {}),
        ...(opts.executors ? { executors: opts.executors } : {}),
        ...(opts.ports !== undefined ? { ports: opts.ports } : {}),
        logger: log,
      });
    }
    const p = plane;
    return {
      url: p.url,
      token: creds.token,
      workerToken: creds.workerToken,
      dataDir,
      dbPath,
      plane: p,
      close: async () => {
        // Running tasks are stopped and will be retried after a restart; nothing accepted is lost.
        await worker?.stop({ drainTimeoutMs: 5_000 });
        await p.close();
        await store.close();
      },
    };
  } catch (err) {
    await plane?.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}

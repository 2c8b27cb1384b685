// A real control plane (HTTP, SQLite store, scheduling loop) for tests that speak the worker protocol by
// hand, with the fallback pass pushed out to a minute so that only the kicks and timers under test place
// anything.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { type Embedded, startEmbedded } from '../../src/server/embedded.js';

export interface HandPlane<A> {
  emb: Embedded;
  /** One API call with `token`; the answer's status and body. */
  call(token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: A }>;
  close(): Promise<void>;
}

/** `A`: the parts of the answers the test reads. */
export async function startHandPlane<A>(prefix: string): Promise<HandPlane<A>> {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const emb = await startEmbedded({
    port: 0,
    dataDir,
    localWorker: false,
    log: pino({ level: 'silent' }),
    config: { schedulerIntervalMs: 60_000 },
  });
  return {
    emb,
    call: async (token, method, path, body) => {
      const res = await fetch(`${emb.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, json: (await res.json()) as A };
    },
    close: async () => {
      await emb.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// Helpers for the cluster tests: real `tsched server` replicas, a TCP proxy the test controls (fail-over
// load balancing and black-holing), a fresh PostgreSQL schema per test, and checks over the run history.

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { spawnTsched, waitHealthy } from './processes.js';

export const ADMIN = `adm-${randomBytes(8).toString('hex')}`;
export const WORKER_TOKEN = `wrk-${randomBytes(8).toString('hex')}`;

export interface Replica {
  url: string;
  port: number;
  proc: ChildProcess;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `tsched server` on a free loopback port and waits for /healthz. */
export async function startReplica(db: string, args: string[] = [], env: Record<string, string> = {}): Promise<Replica> {
  const p = await spawnTsched(
    ['server', '--db', db, '--listen', '127.0.0.1:0', '--admin-token', ADMIN, '--worker-token', WORKER_TOKEN, '--json', ...args],
    /\{"url":"(http:\/\/[^"]+)"/,
    { env, timeoutMs: 30_000, what: 'tsched server' },
  );
  const url = p.match[1] as string;
  await waitHealthy(url);
  return {
    url,
    port: Number(new URL(url).port),
    proc: p.proc,
    output: p.output,
    kill: async (signal: NodeJS.Signals = 'SIGKILL') => {
      await p.stop(signal);
    },
  };
}

export async function health(url: string): Promise<{ leader: boolean; epoch?: number; replica?: string; leaderReplica?: string } | null> {
  try {
    const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    return r.ok ? ((await r.json()) as { leader: boolean }) : null;
  } catch {
    return null;
  }
}

type Held = Buffer | null; // null: the peer closed

/**
 * A TCP proxy under the test's control. Each connection goes to the first backend (in the order `backends()`
 * gives) that accepts it, so it fails over when a replica dies. `cut()` black-holes the link both ways:
 * nothing is delivered and nothing is refused (bytes and closes are held), as in a network partition;
 * `heal()` delivers what was held, in order.
 */
export class TcpProxy {
  private server: net.Server;
  private cutNow = false;
  private links = new Set<{ flush: () => void; destroy: () => void }>();
  private pending: Array<() => void> = [];
  port = 0;
  /** Everything delivered, per direction (up: client → server), when `record` is on. */
  record = false;
  readonly seen = { up: '', down: '' };

  constructor(private readonly backends: () => number[]) {
    this.server = net.createServer((c) => this.accept(c));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.cutNow = true;
  }

  heal(): void {
    this.cutNow = false;
    for (const l of this.links) l.flush();
    for (const p of this.pending.splice(0)) p();
  }

  async close(): Promise<void> {
    for (const l of this.links) l.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    const early: Held[] = [];
    const onEarly = (d: Buffer) => early.push(d);
    client.on('data', onEarly);
    client.once('close', () => early.push(null));
    const go = () => this.connect(client, early, onEarly, [...this.backends()]);
    if (this.cutNow) this.pending.push(go);
    else go();
  }

  private connect(client: net.Socket, early: Held[], onEarly: (d: Buffer) => void, order: number[]): void {
    const port = order.shift();
    if (port === undefined || client.destroyed) {
      client.destroy();
      return;
    }
    const server = net.connect(port, '127.0.0.1');
    let connected = false;
    server.once('error', () => {
      if (!connected) this.connect(client, early, onEarly, order); // refused: next backend
    });
    server.once('connect', () => {
      connected = true;
      server.on('error', () => {});
      client.off('data', onEarly);
      const toServer: Held[] = [...early];
      const toClient: Held[] = [];
      const deliver = (q: Held[], to: net.Socket) => {
        while (q.length > 0) {
          const d = q.shift() as Held;
          if (d === null) to.destroy();
          else if (!to.destroyed) {
            if (this.record) this.seen[to === server ? 'up' : 'down'] += d.toString('latin1');
            to.write(d);
          }
        }
      };
      const link = {
        flush: () => {
          deliver(toServer, server);
          deliver(toClient, client);
        },
        destroy: () => {
          client.destroy();
          server.destroy();
        },
      };
      this.links.add(link);
      const pipe = (from: net.Socket, q: Held[], to: net.Socket) => {
        from.on('data', (d: Buffer) => {
          q.push(d);
          if (!this.cutNow) deliver(q, to);
        });
        from.once('close', () => {
          q.push(null);
          if (!this.cutNow) deliver(q, to);
          if (client.destroyed && server.destroyed) this.links.delete(link);
        });
      };
      pipe(client, toServer, server);
      pipe(server, toClient, client);
      if (early.includes(null)) toServer.push(null);
      if (!this.cutNow) link.flush();
    });
  }
}

/** A fresh schema on the given PostgreSQL; `url` carries ?schema=. */
export async function freshSchema(baseUrl: string): Promise<{ url: string; schema: string; pg: pg.Client; drop(): Promise<void> }> {
  const schema = `tsched_it_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: baseUrl });
  client.on('error', () => {});
  await client.connect();
  return {
    url: `${baseUrl}${baseUrl.includes('?') ? '&' : '?'}schema=${schema}`,
    schema,
    pg: client,
    async drop() {
      const c = new pg.Client({ connectionString: baseUrl });
      c.on('error', () => {});
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
      await client.end().catch(() => {});
    },
  };
}

export interface HistoryCheck {
  /** Per worker: the highest cpu (millicores) and memory (bytes) allocated at any instant, and its capacity. */
  peaks: Array<{ worker: string; cpus: number; memory: number; capCpus: number; capMemory: number }>;
  overcommits: string[];
  /** Tasks with more than one succeeded run. */
  doubleSuccess: number[];
}

/**
 * Reads the run history straight from PostgreSQL: for every worker and every instant, the cpu and memory of
 * runs whose [assigned_at, finished_at) covers it must fit the worker's capacity.
 */
export async function checkHistory(baseUrl: string, schema: string): Promise<HistoryCheck> {
  const c = new pg.Client({ connectionString: baseUrl });
  await c.connect();
  try {
    const workers = (await c.query(`SELECT id, name, capacity FROM "${schema}".workers`)).rows as Array<{
      id: string;
      name: string;
      capacity: string;
    }>;
    const runs = (
      await c.query(
        `SELECT worker_id, cpus::float8 AS cpus, memory::float8 AS memory, assigned_at::float8 AS a, COALESCE(finished_at, 9e15)::float8 AS f FROM "${schema}".runs`,
      )
    ).rows as Array<{ worker_id: string; cpus: number; memory: number; a: number; f: number }>;
    const peaks: HistoryCheck['peaks'] = [];
    const overcommits: string[] = [];
    for (const w of workers) {
      const cap = JSON.parse(w.capacity) as { cpus: number; memory: number };
      // Sweep: ends before starts at the same instant ([a, f) is half-open).
      const evs: Array<[number, number, number, number]> = [];
      for (const r of runs.filter((x) => x.worker_id === w.id)) {
        evs.push([r.a, 1, r.cpus, r.memory]);
        evs.push([r.f, 0, -r.cpus, -r.memory]);
      }
      evs.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
      let cpus = 0;
      let memory = 0;
      let peakC = 0;
      let peakM = 0;
      for (const [t, , dc, dm] of evs) {
        cpus += dc;
        memory += dm;
        if (cpus > peakC) peakC = cpus;
        if (memory > peakM) peakM = memory;
        if (cpus > cap.cpus || memory > cap.memory)
          overcommits.push(`${w.name} at ${new Date(t).toISOString()}: ${cpus}m cpu / ${memory} B > ${cap.cpus}m / ${cap.memory} B`);
      }
      peaks.push({ worker: w.name, cpus: peakC, memory: peakM, capCpus: cap.cpus, capMemory: cap.memory });
    }
    const dbl = (
      await c.query(`SELECT task_id FROM "${schema}".runs WHERE outcome = 'succeeded' GROUP BY task_id HAVING COUNT(*) > 1`)
    ).rows.map((r: { task_id: string }) => Number(r.task_id));
    return { peaks, overcommits, doubleSuccess: dbl };
  } finally {
    await c.end();
  }
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

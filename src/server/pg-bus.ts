// The wake-up bus between replicas over PostgreSQL LISTEN/NOTIFY. Wake-ups only, never state: a lost
// message costs latency (the slow fallback timers and poll timeouts still run), never correctness.
//
// - One dedicated connection LISTENs (pooled connections cannot: LISTEN belongs to a session) and also
//   sends the NOTIFYs. When the database goes away it reconnects with backoff; after a reconnect the
//   replica's own subscribers get a `kick`, because wake-ups may have been missed meanwhile.
// - Publishes are coalesced: every message within `coalesceMs` merges into one payload (one kick, the union
//   of worker ids and run ids), split only to stay under PostgreSQL's 8000-byte payload limit. So a burst of
//   submits on a follower becomes one kick for the leader, and the leader's one pass wakes only the workers
//   it assigned to, wherever their polls are parked — no stampede of idle workers.
// - Own messages are ignored: the publisher has already woken its local waiters before publishing.

import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Bus, BusMessage } from './cluster-seams.js';

export interface PgBusOptions {
  /** postgres://… of the shared database (NOTIFY is per database). */
  url: string;
  /** Channel; default derived from the schema so that schemas (tenants, tests) do not hear each other. */
  channel?: string;
  schema?: string;
  /** Merge window for publishes, ms. Default 3. */
  coalesceMs?: number;
  log?: Logger;
}

/** Wire payload: f = sender, k = kick, w = worker ids, l = run ids with new log output. */
interface Payload {
  f: string;
  k?: 1;
  w?: string[];
  l?: number[];
}

const MAX_PAYLOAD = 7900; // bytes; PostgreSQL refuses 8000 and more

export function channelFor(schema: string): string {
  const c = `tsched_bus_${schema}`;
  return c.length <= 63 ? c : `tsched_bus_${createHash('sha1').update(schema).digest('hex').slice(0, 20)}`;
}

export class PgBus implements Bus {
  readonly id = randomBytes(6).toString('hex');
  readonly channel: string;
  private client: pg.Client | null = null;
  private connected = false;
  private stopped = true;
  private everConnected = false;
  private backoffMs = 100;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly subs: Array<(m: BusMessage) => void> = [];
  private pending = { kick: false, workers: new Set<string>(), logs: new Set<number>() };
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  readonly stats = { published: 0, notifies: 0, received: 0, dropped: 0, reconnects: 0 };

  constructor(private readonly opts: PgBusOptions) {
    this.channel = opts.channel ?? channelFor(opts.schema ?? 'public');
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(this.channel)) throw new Error(`bus: bad channel name "${this.channel}"`);
  }

  isConnected(): boolean {
    return this.connected;
  }

  subscribe(cb: (msg: BusMessage) => void): void {
    this.subs.push(cb);
  }

  publish(msg: BusMessage): void {
    this.stats.published++;
    if (msg.kind === 'kick') this.pending.kick = true;
    else if (msg.kind === 'workers') for (const id of msg.ids) this.pending.workers.add(id);
    else for (const id of msg.runIds) this.pending.logs.add(id);
    if (!this.flushTimer) this.flushTimer = setTimeout(() => void this.flush(), this.opts.coalesceMs ?? 3);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      await this.flush();
    }
    const c = this.client;
    this.client = null;
    this.connected = false;
    await c?.end().catch(() => {});
  }

  /** Splits the pending messages into payloads under the size limit. */
  static payloads(from: string, kick: boolean, workers: string[], logs: number[]): string[] {
    const out: string[] = [];
    let cur: Payload = { f: from, ...(kick ? { k: 1 as const } : {}) };
    let size = Buffer.byteLength(JSON.stringify(cur)) + 16; // room for the two array keys
    const push = () => {
      out.push(JSON.stringify(cur));
      cur = { f: from };
      size = Buffer.byteLength(JSON.stringify(cur)) + 16;
    };
    for (const w of workers) {
      const add = Buffer.byteLength(JSON.stringify(w)) + 1;
      if (size + add > MAX_PAYLOAD && (cur.w?.length || cur.l?.length)) push();
      if (!cur.w) cur.w = [];
      cur.w.push(w);
      size += add;
    }
    for (const l of logs) {
      const add = String(l).length + 1;
      if (size + add > MAX_PAYLOAD && (cur.w?.length || cur.l?.length)) push();
      if (!cur.l) cur.l = [];
      cur.l.push(l);
      size += add;
    }
    if (cur.k || cur.w?.length || cur.l?.length) out.push(JSON.stringify(cur));
    return out;
  }

  /**
   * One flush at a time on the one connection: a flush that starts while another is still sending waits
   * for it, then sends whatever is pending by then. Overlapping queries on a pg Client are queued with a
   * deprecation warning by pg 8 (pg 9 refuses them); under load a new flush timer can fire mid-send.
   */
  private flush(): Promise<void> {
    this.flushTimer = undefined;
    const next = this.flushing.then(() => this.send());
    this.flushing = next.catch(() => {});
    return next;
  }

  private async send(): Promise<void> {
    const { kick, workers, logs } = this.pending;
    this.pending = { kick: false, workers: new Set(), logs: new Set() };
    const payloads = PgBus.payloads(this.id, kick, [...workers], [...logs]);
    const c = this.client;
    if (!c || !this.connected) {
      this.stats.dropped += payloads.length; // the fallback timers cover it
      return;
    }
    for (const p of payloads) {
      try {
        await c.query('SELECT pg_notify($1, $2)', [this.channel, p]);
        this.stats.notifies++;
      } catch (err) {
        this.stats.dropped++;
        this.opts.log?.debug({ err }, 'bus: notify failed (dropped; fallbacks cover it)');
      }
    }
  }

  private deliver(msg: BusMessage): void {
    for (const cb of this.subs) {
      try {
        cb(msg);
      } catch (err) {
        this.opts.log?.error({ err }, 'bus subscriber failed');
      }
    }
  }

  private onNotification(n: pg.Notification): void {
    if (n.channel !== this.channel || !n.payload) return;
    let p: Payload;
    try {
      p = JSON.parse(n.payload) as Payload;
    } catch {
      return;
    }
    if (p.f === this.id) return;
    this.stats.received++;
    if (p.k) this.deliver({ kind: 'kick' });
    if (p.w?.length) this.deliver({ kind: 'workers', ids: p.w });
    if (p.l?.length) this.deliver({ kind: 'logs', runIds: p.l });
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const c = new pg.Client({ connectionString: this.opts.url, keepAlive: true, connectionTimeoutMillis: 5000 });
    this.client = c;
    // Errors on this connection (the server restarting, a network cut) must never reach the process.
    c.on('error', (err) => this.lost(c, err));
    c.on('end', () => this.lost(c, null));
    c.on('notification', (n) => this.onNotification(n));
    try {
      await c.connect();
      await c.query(`LISTEN "${this.channel}"`);
    } catch (err) {
      this.lost(c, err as Error);
      return;
    }
    if (this.stopped) {
      await c.end().catch(() => {});
      return;
    }
    this.connected = true;
    this.backoffMs = 100;
    if (this.everConnected) {
      this.stats.reconnects++;
      this.opts.log?.info('bus: reconnected to PostgreSQL');
      this.deliver({ kind: 'kick' }); // wake-ups may have been missed while away
    }
    this.everConnected = true;
  }

  private lost(c: pg.Client, err: Error | null): void {
    if (this.client !== c) return; // an older connection's late event
    this.client = null;
    this.connected = false;
    c.end().catch(() => {});
    if (this.stopped || this.reconnectTimer) return;
    if (err) this.opts.log?.warn({ err: err.message }, `bus: connection lost; reconnecting in ${this.backoffMs}ms`);
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 2000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }
}

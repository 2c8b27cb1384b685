// PgLeadership and PgBus against a real PostgreSQL (a fresh schema per test): election, takeover after a
// silent leader, immediate step-down when renewal fails, fencing of the deposed leader's epoch, and the bus's
// coalescing, payload splitting, own-message filtering and reconnection.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { PG_URL, postgresAvailable, requireService } from '../../test/helpers/services.js';
import type { KyselyStore } from '../store/kysely-store.js';
import { createPostgresStore } from '../store/postgres.js';
import type { BusMessage } from './cluster-seams.js';
import { PgBus } from './pg-bus.js';
import { PgLeadership } from './pg-leadership.js';

const enabled = requireService('PostgreSQL', await postgresAvailable());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.runIf(enabled)('PgLeadership', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => {});
  });

  async function schemaStore(): Promise<{ open: () => KyselyStore; schema: string }> {
    const schema = `tsched_it_${randomBytes(6).toString('hex')}`;
    cleanup.push(async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    });
    const open = () => {
      const s = createPostgresStore({ url: PG_URL, schema, maxConnections: 3 });
      cleanup.push(() => s.close());
      return s;
    };
    await open().migrate();
    return { open, schema };
  }

  it('elects one leader; a silent leader is replaced after its lease with a new epoch, and its epoch is fenced', async () => {
    const { open } = await schemaStore();
    const sa = open();
    const sb = open();
    const a = new PgLeadership({ store: sa, holder: 'A', ttlMs: 600, renewMs: 200 });
    const b = new PgLeadership({ store: sb, holder: 'B', ttlMs: 600, renewMs: 200 });
    const changesB: boolean[] = [];
    b.onChange((l) => changesB.push(l));
    cleanup.push(
      () => a.stop(),
      () => b.stop(),
    );
    await a.start();
    await b.start();
    expect(a.isLeader()).toBe(true);
    expect(a.epoch()).toBe(1);
    expect(b.isLeader()).toBe(false);
    expect(b.epoch()).toBeNull();
    expect(b.describe()).toMatchObject({ replica: 'B', leaderReplica: 'A', epoch: 1 });
    await sleep(700); // renewals keep A in place well past one lease
    expect(a.isLeader()).toBe(true);
    expect(b.isLeader()).toBe(false);

    // A's database goes silent (its pool is closed: every renewal fails): it steps down at once, and B takes
    // over once the lease has expired.
    const t0 = Date.now();
    await sa.close();
    await until('A to step down', () => !a.isLeader(), 1000);
    await until('B to lead', () => b.isLeader(), 3000);
    const took = Date.now() - t0;
    expect(b.epoch()).toBe(2);
    expect(changesB).toEqual([true]);
    expect(took).toBeLessThan(600 + 200 + 500);
    // A plan decided under epoch 1 is refused now.
    await expect(sb.applyPlan([], { now: Date.now(), leaseMs: 1000, epoch: 1, actor: 'scheduler' })).rejects.toMatchObject({
      code: 'NOT_LEADER',
    });
    await expect(sb.reap(Date.now(), { workerSilenceMs: 1000, capGraceMs: 1000, epoch: 1 })).rejects.toMatchObject({ code: 'NOT_LEADER' });
    expect((await sb.applyPlan([], { now: Date.now(), leaseMs: 1000, epoch: 2, actor: 'scheduler' })).runs).toEqual([]);
  });

  it('a clean stop hands over at once', async () => {
    const { open } = await schemaStore();
    const a = new PgLeadership({ store: open(), holder: 'A', ttlMs: 30_000, renewMs: 200 });
    const b = new PgLeadership({ store: open(), holder: 'B', ttlMs: 30_000, renewMs: 200 });
    cleanup.push(() => b.stop());
    await a.start();
    await b.start();
    expect(a.isLeader()).toBe(true);
    await a.stop();
    expect(a.isLeader()).toBe(false);
    await until('B to lead well before the 30 s lease would expire', () => b.isLeader(), 2000);
    expect(b.epoch()).toBe(2);
  });

  it('refuses a ttl too short for its renewal period', () => {
    expect(() => new PgLeadership({ store: {} as KyselyStore, holder: 'x', ttlMs: 1000, renewMs: 1000 })).toThrow(/ttlMs/);
  });
});

describe('PgBus payloads', () => {
  it('merges into one payload and splits only past the size limit', () => {
    const one = PgBus.payloads('me', true, ['w1', 'w2'], [7]);
    expect(one.map((p) => JSON.parse(p))).toEqual([{ f: 'me', k: 1, w: ['w1', 'w2'], l: [7] }]);
    const ids = Array.from({ length: 2000 }, (_, i) => `worker-${i}-${'x'.repeat(20)}`);
    const many = PgBus.payloads('me', false, ids, []);
    expect(many.length).toBeGreaterThan(1);
    for (const p of many) expect(Buffer.byteLength(p)).toBeLessThan(8000);
    expect(many.flatMap((p) => JSON.parse(p).w)).toEqual(ids);
    expect(PgBus.payloads('me', false, [], [])).toEqual([]);
  });
});

describe.runIf(enabled)('PgBus', () => {
  const buses: PgBus[] = [];
  afterEach(async () => {
    for (const b of buses.splice(0)) await b.stop();
  });

  it('sends one NOTIFY at a time when flushes overlap, each message once', async () => {
    const schema = `tsched_it_${randomBytes(6).toString('hex')}`;
    const a = new PgBus({ url: PG_URL, schema, coalesceMs: 1000 });
    const b = new PgBus({ url: PG_URL, schema, coalesceMs: 1000 });
    buses.push(a, b);
    const gotB: BusMessage[] = [];
    b.subscribe((m) => gotB.push(m));
    await Promise.all([a.start(), b.start()]);
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      // Three flushes at once, as flush timers firing while a NOTIFY is still in flight do under load.
      const flush = () => (a as unknown as { flush(): Promise<void> }).flush();
      a.publish({ kind: 'workers', ids: ['w1'] });
      const f1 = flush();
      a.publish({ kind: 'workers', ids: ['w2'] });
      const f2 = flush();
      a.publish({ kind: 'logs', runIds: [5] });
      const f3 = flush();
      await Promise.all([f1, f2, f3]);
      const heard = () => ({
        workers: gotB.flatMap((m) => (m.kind === 'workers' ? m.ids : [])).sort(),
        logs: gotB.flatMap((m) => (m.kind === 'logs' ? m.runIds : [])),
      });
      await until('b to hear every message', () => heard().workers.length >= 2 && heard().logs.length >= 1);
      await sleep(50);
      // Waiting flushes send what is pending when their turn comes: fewer NOTIFYs, nothing twice.
      expect(heard()).toEqual({ workers: ['w1', 'w2'], logs: [5] });
      expect(a.stats.notifies).toBeLessThanOrEqual(3);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((m) => m.includes('already executing a query'))).toEqual([]);
  });

  it('delivers coalesced wake-ups to the other replicas only, and reconnects after its connection is killed', async () => {
    const schema = `tsched_it_${randomBytes(6).toString('hex')}`;
    const a = new PgBus({ url: PG_URL, schema, coalesceMs: 5 });
    const b = new PgBus({ url: PG_URL, schema, coalesceMs: 5 });
    const other = new PgBus({ url: PG_URL, schema: `${schema}_other`, coalesceMs: 5 });
    buses.push(a, b, other);
    const gotA: BusMessage[] = [];
    const gotB: BusMessage[] = [];
    const gotOther: BusMessage[] = [];
    a.subscribe((m) => gotA.push(m));
    b.subscribe((m) => gotB.push(m));
    other.subscribe((m) => gotOther.push(m));
    await Promise.all([a.start(), b.start(), other.start()]);

    for (let i = 0; i < 50; i++) a.publish({ kind: 'kick' });
    a.publish({ kind: 'workers', ids: ['w1'] });
    a.publish({ kind: 'workers', ids: ['w2', 'w1'] });
    a.publish({ kind: 'logs', runIds: [3] });
    await until('b to hear', () => gotB.length >= 3);
    await sleep(100);
    expect(gotB).toEqual([{ kind: 'kick' }, { kind: 'workers', ids: ['w1', 'w2'] }, { kind: 'logs', runIds: [3] }]);
    expect(a.stats.notifies).toBe(1); // 53 publishes, one NOTIFY
    expect(gotA).toEqual([]); // own messages are ignored
    expect(gotOther).toEqual([]); // another schema's channel

    // Kill b's LISTEN connection from the server side, as a database restart would.
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN "${b.channel}"%' AND pid <> pg_backend_pid()`,
    );
    await admin.end();
    await until('b to reconnect', () => b.stats.reconnects === 1, 5000);
    expect(gotB.at(-1)).toEqual({ kind: 'kick' }); // a reconnect wakes the local loops (wake-ups may have been missed)
    gotB.length = 0;
    a.publish({ kind: 'workers', ids: ['w9'] });
    await until('b to hear after reconnecting', () => gotB.length >= 1);
    expect(gotB).toEqual([{ kind: 'workers', ids: ['w9'] }]);
  });
});

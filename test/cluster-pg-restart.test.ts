// The database goes away mid-run and comes back, with real processes. The test runs its OWN PostgreSQL
// server (initdb into a temp dir, on a free port) so that it can stop and start it without disturbing the
// shared one other test files use. While it is down the replicas must stay up and the API must answer 503
// STORE_UNAVAILABLE with Retry-After; once it is back, the run completes: every task done exactly once,
// no worker allocated past its capacity, and new work still flows (the wake-up bus reconnected).

import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, checkHistory, freshSchema, health, type Replica, startReplica, WORKER_TOKEN } from './helpers/cluster.js';
import { api, startWorkerProc, type WorkerProcess, waitFor } from './helpers/processes.js';
import { requireService } from './helpers/services.js';

function pgBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  for (const v of readdirSync(root).sort().reverse()) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  return null;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A private PostgreSQL server: initdb, pg_ctl start/stop (as the postgres user when we are root). */
class OwnPostgres {
  readonly dir = mkdtempSync(join(tmpdir(), 'tsched-pg-'));
  port = 0;
  constructor(private readonly bin: string) {}
  private run(args: string[]): string {
    const cmd = [join(this.bin, args[0]!), ...args.slice(1)];
    if (process.getuid?.() === 0)
      return execFileSync('su', ['postgres', '-c', cmd.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')], {
        encoding: 'utf8',
        stdio: 'pipe',
      });
    return execFileSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', stdio: 'pipe' });
  }
  async init(): Promise<void> {
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(this.dir, uid, gid);
    }
    this.port = await freePort();
    this.run(['initdb', '-D', join(this.dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync']);
  }
  start(): void {
    this.run([
      'pg_ctl',
      '-D',
      join(this.dir, 'data'),
      '-l',
      join(this.dir, 'log'),
      '-w',
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
      'start',
    ]);
  }
  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    this.run(['pg_ctl', '-D', join(this.dir, 'data'), '-w', '-m', mode, 'stop']);
  }
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }
  destroy(): void {
    try {
      this.stop('immediate');
    } catch {}
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const bin = pgBinDir();
const enabled = requireService('PostgreSQL server binaries (initdb, pg_ctl) for a private instance', bin !== null);

describe.runIf(enabled)('cluster: PostgreSQL restarted mid-run', () => {
  let own: OwnPostgres;
  let db: Awaited<ReturnType<typeof freshSchema>>;
  const replicas: Replica[] = [];
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    own = new OwnPostgres(bin!);
    await own.init();
    own.start();
    db = await freshSchema(own.url);
    replicas.push(await startReplica(db.url));
    replicas.push(await startReplica(db.url));
    workers.push(
      ...(await Promise.all([
        startWorkerProc({ url: replicas[0]!.url, workerToken: WORKER_TOKEN }, { name: 'rw1', args: ['--cpus', '2', '--memory', '1GiB'] }),
        startWorkerProc({ url: replicas[1]!.url, workerToken: WORKER_TOKEN }, { name: 'rw2', args: ['--cpus', '1', '--memory', '512MiB'] }),
      ])),
    );
  }, 90_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
    try {
      own.start(); // in case a failure left it stopped
    } catch {}
    await db?.drop().catch(() => {});
    own?.destroy();
  });

  const count = async (status: string) =>
    Number((await db.pg.query(`SELECT COUNT(*) AS n FROM "${db.schema}".tasks WHERE status = $1`, [status])).rows[0].n);

  it('survives the restart, answers 503 with Retry-After meanwhile, and completes the run', async () => {
    const N = 300;
    const call0 = api(replicas[0]!.url, ADMIN);
    const tasks = Array.from({ length: N }, (_, i) => ({
      command: ['sleep', `0.0${2 + (i % 4)}`],
      resources: { cpus: i % 2 === 0 ? 0.5 : 1, memory: '64Mi' },
      totalAttempts: 5,
    }));
    expect((await call0('POST', '/v1/tasks', { tasks })).status).toBe(201);
    await waitFor('a fifth done', async () => (await count('done')) >= N / 5, 60_000, 100);

    await db.pg.end(); // our own checking connection would only see the restart as an error
    const downAt = Date.now();
    own.stop('fast');
    // While it is down: the processes stay up and the API says 503 + Retry-After with a stable code.
    const seen: number[] = [];
    for (const r of replicas) {
      for (const [method, path, body] of [
        ['GET', '/v1/tasks?limit=5', undefined],
        ['POST', '/v1/tasks', { command: ['true'] }],
      ] as const) {
        const res = await api(r.url, ADMIN)(method, path, body);
        seen.push(res.status);
        expect(res.status, res.text).toBe(503);
        expect(res.json.error.code).toBe('STORE_UNAVAILABLE');
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      }
    }
    // The leader steps down within its lease: nobody can renew it without the database.
    await waitFor(
      'the leader to step down',
      async () => (await Promise.all(replicas.map((r) => health(r.url)))).every((h) => h && !h.leader),
      5000,
      50,
    );
    const stepDownMs = Date.now() - downAt;
    await new Promise((r) => setTimeout(r, 2500)); // down for a few seconds, as in a real restart
    for (const r of replicas) expect(r.proc.exitCode).toBeNull();
    own.start();
    const downMs = Date.now() - downAt;

    db = { ...db, pg: await reconnect(own.url) };
    await waitFor('all done', async () => (await count('done')) === N, 90_000, 200);
    const back = Date.now();
    // New work flows after the restart, submitted on the other replica (a follower or the leader).
    const more = await api(replicas[1]!.url, ADMIN)('POST', '/v1/tasks', {
      tasks: Array.from({ length: 20 }, () => ({ command: ['true'], resources: { cpus: 0.5, memory: '16Mi' } })),
    });
    expect(more.status, more.text).toBe(201);
    await waitFor('the new tasks done', async () => (await count('done')) === N + 20, 30_000, 100);

    for (const r of replicas) expect(r.proc.exitCode).toBeNull();
    const statuses = (await db.pg.query(`SELECT status, COUNT(*)::int AS n FROM "${db.schema}".tasks GROUP BY status`)).rows;
    expect(statuses).toEqual([{ status: 'done', n: N + 20 }]);
    const h = await checkHistory(own.url, db.schema);
    expect(h.doubleSuccess).toEqual([]);
    expect(h.overcommits).toEqual([]);
    const hs = await Promise.all(replicas.map((r) => health(r.url)));
    expect(hs.filter((x) => x?.leader)).toHaveLength(1);
    console.log(
      `[cluster-pg-restart] PostgreSQL down ${downMs} ms (${seen.length} requests answered 503 + Retry-After; the leader stepped down after ${stepDownMs} ms); run of ${N} completed ${back - downAt} ms after the stop; 20 more tasks ran afterwards`,
    );
  }, 180_000);
});

async function reconnect(url: string) {
  const pg = (await import('pg')).default;
  return waitFor(
    'PostgreSQL back',
    async () => {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {});
      await c.connect();
      return c;
    },
    30_000,
    200,
  );
}

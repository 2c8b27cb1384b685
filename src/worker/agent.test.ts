// The agent against a small but real HTTP server (node:http) that speaks the worker protocol of
// src/protocol/worker-api.ts: it registers, hands out assignments, records reports and refuses stale tokens.
// The agent, its executor and its processes are all real.

import { spawn } from 'node:child_process';
import { existsSync, promises as fsp, readdirSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WorkerReportBody } from '../protocol/schemas.js';
import type { WireAssignment } from '../protocol/worker-api.js';
import type { ItemAck } from '../store/port.js';
import { startWorker, type WorkerHandle } from './agent.js';
import { assignment } from './test-helpers.js';

type Result = NonNullable<WorkerReportBody['results']>[number];

class FakeControlPlane {
  server: Server;
  url = '';
  registers: Array<Record<string, unknown>> = [];
  polls: Array<{ running: Array<{ runId: number; token: string }> }> = [];
  reports: WorkerReportBody[] = [];
  queue: WireAssignment[] = [];
  cancels: number[] = [];
  orphaned: number[] = [];
  /** Tokens the server considers stale. */
  stale = new Set<string>();
  /** While > now, every report and poll answers 503. */
  downUntil = 0;
  /** The next N polls answer 404 WORKER_NOT_FOUND. */
  forgetPolls = 0;
  drained = false;
  workerId = 'w-1';
  /** Behave like a server that predates reports riding on polls: such a poll is refused as an unknown field. */
  legacy = false;
  /** Which path each report came by. */
  reportPaths: Array<'poll' | 'report'> = [];
  /** Handed only to the next poll that carries a report (as the server hands out what a result made room for). */
  forReport: WireAssignment[] = [];

  constructor() {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  get results(): Result[] {
    return this.reports.flatMap((r) => r.results ?? []);
  }
  logsOf(runId: number, stream = 'stdout'): string {
    return this.reports
      .flatMap((r) => r.logs ?? [])
      .filter((l) => l.runId === runId && l.stream === stream)
      .map((l) => l.data)
      .join('');
  }

  private ack = (items: Array<{ runId: number; token: string }> | undefined): ItemAck[] =>
    (items ?? []).map((i) =>
      this.stale.has(i.token) ? { runId: i.runId, ok: false, code: 'LEASE_STALE' as const } : { runId: i.runId, ok: true },
    );

  private send(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const c of req) raw += c;
    const body = raw ? JSON.parse(raw) : {};
    if (req.headers.authorization !== 'Bearer secret') return this.send(res, 401, { error: { code: 'UNAUTHENTICATED', message: 'no' } });
    const url = req.url ?? '';
    if (url === '/v1/workers/register') {
      this.registers.push(body);
      const orphaned = this.orphaned;
      this.orphaned = [];
      return this.send(res, 200, { worker: { id: this.workerId, ...body, state: 'active' }, orphaned, heartbeatMs: 300, leaseMs: 1500 });
    }
    if (Date.now() < this.downUntil) return this.send(res, 503, { error: { code: 'STORE_UNAVAILABLE', message: 'down' } });
    if (url.endsWith('/drain')) {
      this.drained = true;
      return this.send(res, 200, {});
    }
    if (url.endsWith('/poll')) {
      if (this.forgetPolls > 0) {
        this.forgetPolls--;
        return this.send(res, 404, { error: { code: 'WORKER_NOT_FOUND', message: 'who?' } });
      }
      this.polls.push({ running: body.running ?? [] });
      // A report riding on the poll is recorded like a report and acked item by item; such a poll never waits.
      const carries = Boolean(body.started?.length || body.logs?.length || body.results?.length);
      if (carries && this.legacy)
        return this.send(res, 400, { error: { code: 'UNKNOWN_FIELD', message: 'body has an unknown field "results"' } });
      if (carries) {
        this.reports.push({ started: body.started, logs: body.logs, results: body.results, running: body.running });
        this.reportPaths.push('poll');
      }
      const until = carries ? 0 : Date.now() + Math.min(body.wait ?? 0, 200);
      while (this.queue.length === 0 && this.cancels.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      const assignments = [...(carries ? this.forReport.splice(0) : []), ...this.queue.splice(0, body.max ?? 1000)];
      const cancel = this.cancels.splice(0);
      const acks = carries ? { started: this.ack(body.started), logs: this.ack(body.logs), results: this.ack(body.results) } : {};
      return this.send(res, 200, { assignments, cancel, acks: this.ack(body.running), drain: this.drained, ...acks });
    }
    if (url.endsWith('/report')) {
      this.reports.push(body);
      this.reportPaths.push('report');
      return this.send(res, 200, {
        started: this.ack(body.started),
        logs: this.ack(body.logs),
        results: this.ack(body.results),
        running: this.ack(body.running),
        cancel: [],
      });
    }
    this.send(res, 404, { error: { code: 'NOT_FOUND', message: url } });
  }
}

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

/** What the results spool holds: its active segment is emptied in place, not deleted, once all is acked. */
function spooledBytes(workDir: string): number {
  const dir = join(workDir, 'spool');
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let cp: FakeControlPlane;
let workDir: string;
let worker: WorkerHandle | null;

beforeEach(async () => {
  cp = new FakeControlPlane();
  await cp.listen();
  workDir = await fsp.mkdtemp(join(tmpdir(), 'tsched-agent-'));
  worker = null;
});

afterEach(async () => {
  await worker?.stop({ drainTimeoutMs: 0 });
  await cp.close();
  await fsp.rm(workDir, { recursive: true, force: true });
});

const start = (over: Partial<Parameters<typeof startWorker>[0]> = {}) =>
  startWorker({ server: cp.url, token: 'secret', name: 'agent-test', workDir, pollWaitMs: 200, killGraceMs: 500, logger: quiet, ...over });

describe('worker agent', () => {
  it('registers with its capacity and enforcement, runs assignments and reports starts, logs and results', async () => {
    worker = await start({ cpus: 1.5, memory: 1024 ** 3, labels: { zone: 'a' }, ports: { from: 30000, to: 30010 } });
    expect(worker.id).toBe('w-1');
    const reg = cp.registers[0] as {
      name: string;
      capacity: unknown;
      labels: unknown;
      executors: string[];
      enforcement: { memory: string; cpu: string };
    };
    expect(reg.name).toBe('agent-test');
    expect(reg.capacity).toEqual({ cpus: 1500, memory: 1024 ** 3, ports: { from: 30000, to: 30010 } });
    expect(reg.labels).toEqual({ zone: 'a' });
    expect(reg.executors).toEqual(['shell']);
    expect(['cgroup-v1', 'cgroup-v2', 'rss-watch']).toContain(reg.enforcement.memory);

    const ok = assignment({ command: ['/bin/sh', '-c', 'echo hello $TSCHED_RUN_ID; echo oops >&2'] });
    const bad = assignment({ command: ['/bin/sh', '-c', 'exit 3'] });
    cp.queue.push(ok, bad);
    await waitFor(() => cp.results.length === 2, 10_000, 'two results');
    const byRun = new Map(cp.results.map((r) => [r.runId, r]));
    expect(byRun.get(ok.runId)).toMatchObject({ token: ok.token, outcome: 'succeeded', exitCode: 0, reason: null });
    expect(byRun.get(bad.runId)).toMatchObject({ token: bad.token, outcome: 'failed', exitCode: 3, reason: 'exit_code: 3' });
    expect(typeof byRun.get(ok.runId)?.startedAt).toBe('number');
    const started = cp.reports.flatMap((r) => r.started ?? []).map((s) => s.runId);
    expect(started.sort()).toEqual([ok.runId, bad.runId].sort());
    expect(cp.logsOf(ok.runId)).toBe(`hello ${ok.runId}\n`);
    expect(cp.logsOf(ok.runId, 'stderr')).toBe('oops\n');
    // A run's logs arrive no later than its result.
    const resultIdx = cp.reports.findIndex((r) => r.results?.some((x) => x.runId === ok.runId));
    const lastLogIdx = cp.reports.map((r, i) => (r.logs?.some((l) => l.runId === ok.runId) ? i : -1)).reduce((a, b) => Math.max(a, b));
    expect(lastLogIdx).toBeLessThanOrEqual(resultIdx);
    await waitFor(() => spooledBytes(workDir) === 0, 2000, 'spool emptied after acks');
    expect(worker.running()).toBe(0);
  });

  it('sends reports on non-waiting polls and starts the assignments that come back with the acks', async () => {
    worker = await start();
    const first = assignment({ command: ['/bin/sh', '-c', 'sleep 0.3'] });
    const next = assignment({ command: ['/bin/sh', '-c', 'echo next'] });
    cp.queue.push(first);
    // `next` is given only to a poll that carries a report: the agent can run it only if it takes the
    // assignments that come back with the acks of first's result.
    cp.forReport.push(next);
    await waitFor(() => cp.results.length === 2, 10_000, 'both results');
    // (first's start report may be the one that carries `next` back: it then ends before first does.)
    expect(cp.results.map((r) => r.runId).sort()).toEqual([first.runId, next.runId].sort());
    expect(cp.results.find((r) => r.runId === next.runId)).toMatchObject({ outcome: 'succeeded', exitCode: 0 });
    expect(cp.logsOf(next.runId)).toBe('next\n');
    expect(cp.reportPaths[0]).toBe('poll');
  });

  it('falls back to plain reports against a server whose poll takes no report', async () => {
    cp.legacy = true;
    worker = await start();
    const a = assignment({ command: ['/bin/sh', '-c', 'exit 0'] });
    const b = assignment({ command: ['/bin/sh', '-c', 'exit 4'] });
    cp.queue.push(a, b);
    await waitFor(() => cp.results.length === 2, 10_000, 'both results');
    expect(cp.reportPaths.every((p) => p === 'report')).toBe(true);
    expect(new Map(cp.results.map((r) => [r.runId, r.exitCode]))).toEqual(
      new Map([
        [a.runId, 0],
        [b.runId, 4],
      ]),
    );
  });

  it('ships a long run’s output while it runs and heartbeats it', async () => {
    worker = await start();
    const a = assignment({ command: ['/bin/sh', '-c', 'echo first; sleep 1.2; echo second'] });
    cp.queue.push(a);
    await waitFor(() => cp.logsOf(a.runId) === 'first\n', 1500, 'the first line within ~1 s');
    expect(cp.results).toHaveLength(0);
    await waitFor(
      () =>
        cp.reports.some((r) => r.running?.some((x) => x.runId === a.runId)) ||
        cp.polls.some((p) => p.running.some((x) => x.runId === a.runId)),
      2000,
      'a heartbeat',
    );
    await waitFor(() => cp.results.length === 1, 5000, 'the result');
    expect(cp.logsOf(a.runId)).toBe('first\nsecond\n');
  });

  it('kills a run at once when its lease is stale, and never reports its result', async () => {
    worker = await start();
    const a = assignment({ command: ['/bin/sleep', '30'] });
    cp.stale.add(a.token);
    cp.queue.push(a);
    await waitFor(() => cp.reports.some((r) => r.started?.some((s) => s.runId === a.runId)), 5000, 'the start report');
    await waitFor(() => worker?.running() === 0, 3000, 'the stale run killed');
    await new Promise((r) => setTimeout(r, 300));
    expect(cp.results.filter((r) => r.runId === a.runId)).toEqual([]);
  });

  it('stops a cancelled run: outcome cancelled', async () => {
    worker = await start();
    const a = assignment({ command: ['/bin/sleep', '30'] });
    cp.queue.push(a);
    await waitFor(() => worker?.running() === 1 && cp.reports.some((r) => r.started?.length), 5000, 'the run started');
    cp.cancels.push(a.runId);
    await waitFor(() => cp.results.length === 1, 5000, 'the cancelled result');
    expect(cp.results[0]).toMatchObject({ runId: a.runId, outcome: 'cancelled' });
  });

  it('keeps results in its spool while the server is away, then delivers them', async () => {
    worker = await start();
    cp.downUntil = Date.now() + 1500;
    // Long enough to finish only after the server went down again (a bare echo can be reported before).
    const a = assignment({ command: ['/bin/sh', '-c', 'sleep 0.3; echo while down'] });
    cp.queue.push(a);
    // The poll is down too; deliver the assignment by letting one poll through right now.
    cp.downUntil = 0;
    await waitFor(() => worker?.running() === 1 || cp.queue.length === 0, 3000, 'the assignment taken');
    cp.downUntil = Date.now() + 1500;
    await waitFor(() => existsSync(join(workDir, 'spool')) && spooledBytes(workDir) > 0, 3000, 'a spooled result');
    const seg = readdirSync(join(workDir, 'spool'))[0] as string;
    expect(await fsp.readFile(join(workDir, 'spool', seg), 'utf8')).toContain(`"runId":${a.runId}`);
    await waitFor(() => cp.results.some((r) => r.runId === a.runId), 15_000, 'the result after the server came back');
    await waitFor(() => spooledBytes(workDir) === 0, 2000, 'the spool emptied');
  });

  it('on start, resends spooled results and kills what a previous life left behind', async () => {
    // A previous life: a spooled result, and a live process recorded under pids/.
    await fsp.mkdir(join(workDir, 'spool'), { recursive: true });
    await fsp.mkdir(join(workDir, 'pids'), { recursive: true });
    const old: Result = {
      runId: 424242,
      token: 'old-tok',
      outcome: 'succeeded',
      exitCode: 0,
      reason: null,
      startedAt: 1,
      finishedAt: 2,
      usage: { peakMemory: null, cpuSeconds: null },
    };
    await fsp.writeFile(join(workDir, 'spool', '000000000000001-1-0.jsonl'), `${JSON.stringify(old)}\n{"torn`);
    const leftover = spawn('/bin/sleep', ['60'], { detached: true, stdio: 'ignore', env: { TSCHED_RUN_ID: '777' } });
    await fsp.writeFile(join(workDir, 'pids', '777'), JSON.stringify({ runId: 777, pid: leftover.pid, startedAt: Date.now() }));
    const exited = new Promise((r) => leftover.once('exit', (_c, sig) => r(sig)));

    worker = await start();
    expect(await exited).toBe('SIGKILL');
    expect(existsSync(join(workDir, 'pids', '777'))).toBe(false);
    await waitFor(() => cp.results.some((r) => r.runId === 424242), 5000, 'the spooled result resent');
    expect(cp.results.find((r) => r.runId === 424242)).toEqual(old);
    await waitFor(() => spooledBytes(workDir) === 0, 2000, 'the spool emptied');
  });

  it('a pid record whose process is not that run’s is left alone (pid reuse)', async () => {
    await fsp.mkdir(join(workDir, 'pids'), { recursive: true });
    const innocent = spawn('/bin/sleep', ['60'], { detached: true, stdio: 'ignore', env: { TSCHED_RUN_ID: '1' } });
    await fsp.writeFile(join(workDir, 'pids', '778'), JSON.stringify({ runId: 778, pid: innocent.pid, startedAt: Date.now() }));
    worker = await start();
    expect(innocent.exitCode).toBeNull();
    expect(() => process.kill(innocent.pid as number, 0)).not.toThrow();
    innocent.kill('SIGKILL');
  });

  it('registers again on 404 WORKER_NOT_FOUND and kills the runs the server ended as orphaned', async () => {
    worker = await start();
    const a = assignment({ command: ['/bin/sleep', '30'] });
    cp.queue.push(a);
    await waitFor(() => worker?.running() === 1, 5000, 'the run started');
    cp.orphaned = [a.runId];
    cp.stale.add(a.token);
    cp.forgetPolls = 1;
    await waitFor(() => cp.registers.length === 2, 5000, 'a second register');
    await waitFor(() => worker?.running() === 0, 3000, 'the orphaned run killed');
    // Work goes on after re-registering.
    const b = assignment({ command: ['/bin/true'] });
    cp.queue.push(b);
    await waitFor(() => cp.results.some((r) => r.runId === b.runId), 5000, 'a run after re-register');
    expect(cp.results.some((r) => r.runId === a.runId)).toBe(false);
  });

  it('stop drains: asks the server to drain, lets runs finish, then stops the rest (they end lost)', async () => {
    worker = await start();
    const quick = assignment({ command: ['/bin/sh', '-c', 'sleep 0.3; echo done'] });
    const slow = assignment({ command: ['/bin/sleep', '30'] });
    cp.queue.push(quick, slow);
    await waitFor(() => worker?.running() === 2, 5000, 'both running');
    const t0 = Date.now();
    await worker.stop({ drainTimeoutMs: 1000 });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(cp.drained).toBe(true);
    const byRun = new Map(cp.results.map((r) => [r.runId, r]));
    expect(byRun.get(quick.runId)?.outcome).toBe('succeeded');
    expect(byRun.get(slow.runId)).toMatchObject({ outcome: 'cancelled', reason: 'worker_drain' });
    worker = null;
  });

  it('puts run directories under runsDir/<name> when given', async () => {
    const runsDir = join(workDir, 'fast-runs');
    worker = await start({ runsDir });
    const a = assignment({ command: ['/bin/pwd'] });
    cp.queue.push(a);
    await waitFor(() => cp.results.length === 1, 5000, 'the result');
    expect(cp.logsOf(a.runId)).toBe(`${join(runsDir, 'agent-test', String(a.runId))}\n`);
    expect(existsSync(join(runsDir, 'agent-test', String(a.runId)))).toBe(false);
  });

  it('refuses to start with a bad token, with the server’s reason', async () => {
    await expect(startWorker({ server: cp.url, token: 'wrong', workDir, logger: quiet })).rejects.toThrow(/401|no/);
  });
});

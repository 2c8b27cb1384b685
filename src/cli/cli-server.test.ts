// The built CLI against the REAL control plane (startEmbedded: Fastify API, scheduler, SQLite), with a
// worker that speaks the real HTTP worker protocol from this test, so runs, logs and outcomes are the
// server's own. Covers submit/ls/show/explain/events/logs (-f)/cancel/retry/workers/drain, --wait exit
// codes, idempotency keys, and the 401/404/400 messages.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PollResponse, RegisterResponse, WireAssignment } from '../protocol/worker-api.js';
import { type Embedded, startEmbedded } from '../server/embedded.js';
import { ROOT, runCli } from './test-helpers.js';

let emb: Embedded;
let env: Record<string, string>;

/** A minimal worker over the real protocol: register, long-poll, report. */
class ProtocolWorker {
  id = '';
  constructor(
    private url: string,
    private token: string,
    readonly name: string,
  ) {}
  private async post<T>(path: string, body: unknown): Promise<T> {
    const r = await fetch(this.url + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }
  async register(): Promise<void> {
    const r = await this.post<RegisterResponse>('/v1/workers/register', {
      name: this.name,
      capacity: { cpus: 2000, memory: 2 * 1024 ** 3, ports: { from: 21000, to: 21009 } },
      executors: ['shell'],
    });
    this.id = r.worker.id;
  }
  async take(taskId: number): Promise<WireAssignment> {
    for (let i = 0; i < 40; i++) {
      const r = await this.post<PollResponse>(`/v1/workers/${this.id}/poll`, { wait: 500 });
      const a = r.assignments.find((x) => x.taskId === taskId);
      if (a) return a;
    }
    throw new Error(`task ${taskId} was never assigned to ${this.name}`);
  }
  async report(body: unknown): Promise<void> {
    await this.post(`/v1/workers/${this.id}/report`, body);
  }
  async run(a: WireAssignment, lines: string[], exitCode: number): Promise<void> {
    const t0 = Date.now();
    await this.report({ started: [{ runId: a.runId, token: a.token, at: t0 }] });
    for (const data of lines) await this.report({ logs: [{ runId: a.runId, token: a.token, stream: 'stdout', at: Date.now(), data }] });
    await this.report({
      results: [
        {
          runId: a.runId,
          token: a.token,
          outcome: exitCode === 0 ? 'succeeded' : 'failed',
          exitCode,
          reason: exitCode === 0 ? null : `exit code ${exitCode}`,
          startedAt: t0,
          finishedAt: Date.now(),
          usage: { peakMemory: 4 * 1024 ** 2, cpuSeconds: 0.01 },
        },
      ],
    });
  }
}

const submitId = async (args: string[]): Promise<number> => {
  const r = await runCli(['submit', ...args], env);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^\d+\n$/);
  return Number(r.stdout.trim());
};

beforeAll(async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tsched-cli-server-'));
  emb = await startEmbedded({ port: 0, dataDir, localWorker: false, log: pino({ level: 'silent' }) });
  env = { TSCHED_URL: emb.url, TSCHED_TOKEN: emb.token, TSCHED_CONFIG: join(dataDir, 'cli.json') };
});

afterAll(async () => {
  await emb?.close();
});

describe('tsched CLI against the real server', () => {
  it('submits, lists, shows, explains and lists events of a waiting task', async () => {
    const id = await submitId(['--name', 'waits', '--cpus', '0.5', '--memory', '256MiB', '--priority', 'high', '--', 'echo', 'hi']);

    const ls = await runCli(['ls'], env);
    expect(ls.code).toBe(0);
    expect(ls.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+STATUS\s+ATTEMPTS\s+RESOURCES\s+AGE$/);
    expect(ls.stdout).toMatch(new RegExp(`^${id}\\s+waits\\s+waiting\\s+0/3\\s+0\\.5cpu 256MiB\\s+\\d+s$`, 'm'));
    const lsJson = JSON.parse((await runCli(['ls', '--json', '--status', 'waiting'], env)).stdout);
    expect(lsJson.tasks.map((t: { id: number }) => t.id)).toContain(id);

    const show = await runCli(['show', String(id)], env);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain('name:             waits');
    expect(show.stdout).toContain('priority:         high (75)');
    expect(show.stdout).toContain('attempts: none yet');
    expect(show.stdout).toContain('why it is waiting:');
    expect(show.stdout).toMatch(/events:\n.*\n.*task\.submitted/);
    const showJson = JSON.parse((await runCli(['show', String(id), '--json'], env)).stdout);
    expect(showJson).toMatchObject({ task: { id, status: 'waiting' }, runs: [] });
    expect(showJson.events[0]).toMatchObject({ type: 'task.submitted' });

    const explain = await runCli(['explain', String(id)], env);
    expect(explain.code).toBe(0);
    expect(explain.stdout.length).toBeGreaterThan(0);
    expect(JSON.parse((await runCli(['explain', String(id), '--json'], env)).stdout).explanation.message).toBe(
      showJson.explanation.message,
    );

    const events = await runCli(['events', String(id)], env);
    expect(events.stdout).toMatch(/task\.submitted\s+- → waiting/);

    const logs = await runCli(['logs', String(id)], env);
    expect(logs.code).toBe(0);
    expect(logs.stderr).toContain(`task ${id} has not run yet`);
  });

  it('cancels and retries', async () => {
    const id = await submitId(['--cpus', '64', '--', 'true']);
    const c = await runCli(['cancel', String(id)], env);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toBe(`task ${id} cancelled\n`);
    const r = await runCli(['retry', String(id), '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id, status: 'waiting' });
    expect((await runCli(['cancel', String(id)], env)).code).toBe(0);
  });

  it('submits a manifest batch, and replays an idempotency key', async () => {
    const b = await runCli(['submit', '-f', join(ROOT, 'examples', 'batch.json'), '--json'], env);
    expect(b.code, b.stderr).toBe(0);
    const tasks = JSON.parse(b.stdout);
    expect(tasks.map((t: { name: string }) => t.name)).toEqual(['fetch', 'transform', 'serve-preview']);

    const first = await runCli(['submit', '--idempotency-key', 'cli-key-1', '--cpus', '64', '--', 'echo', 'once'], env);
    const again = await runCli(['submit', '--idempotency-key', 'cli-key-1', '--cpus', '64', '--', 'echo', 'once'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(first.stdout);
    expect(again.stderr).toContain('was used before: nothing new was created');
    for (const id of [...tasks.map((t: { id: number }) => t.id), Number(first.stdout)]) await runCli(['cancel', String(id)], env);
  });

  it('explains refusals: a bad token (exit 4, where it came from), an unknown task (exit 4)', async () => {
    const bad = await runCli(['ls'], { ...env, TSCHED_TOKEN: 'tsk_wrong' });
    expect(bad.code).toBe(4);
    expect(bad.stderr).toContain('the server refused the token (it came from the TSCHED_TOKEN environment variable)');
    const none = await runCli(['ls'], { TSCHED_URL: emb.url, TSCHED_CONFIG: env.TSCHED_CONFIG as string });
    expect(none.code).toBe(4);
    expect(none.stderr).toContain('the server wants a token and none was given');
    const missing = await runCli(['show', '999999'], env);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toBe('tsched: no task 999999\n');
    const badStatus = await runCli(['ls', '--status', 'sleeping'], env);
    expect(badStatus.code).toBe(2);
    expect(badStatus.stderr).toContain('--status: expected statuses among waiting, in_progress, done, failed, cancelled, got "sleeping"');
  });

  it('runs a task on a protocol worker: logs -f streams it live, --wait exits 0 on done and 1 on failure', async () => {
    const worker = new ProtocolWorker(emb.url, emb.workerToken, 'cli-test-worker');
    await worker.register();

    const ws = await runCli(['workers'], env);
    expect(ws.stdout).toMatch(/^cli-test-worker\s+active\s+2cpu 2GiB 10p\s+/m);

    // --wait on a task that succeeds.
    const waiting = runCli(['submit', '--wait', '--name', 'ok', '--', 'echo', 'hello'], env);
    let id = 0;
    for (let i = 0; i < 100 && !id; i++) {
      const page = JSON.parse((await runCli(['ls', '--json', '--status', 'waiting,in_progress'], env)).stdout);
      id = page.tasks.find((t: { name: string }) => t.name === 'ok')?.id ?? 0;
      if (!id) await new Promise((r) => setTimeout(r, 100));
    }
    const a = await worker.take(id);
    const follow = runCli(['logs', '-f', String(id)], env);
    await new Promise((r) => setTimeout(r, 500)); // let the follower connect before output arrives
    await worker.run(a, ['hello\n', 'world\n'], 0);
    const done = await waiting;
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toBe(`${id}\n`);
    expect(done.stderr).toContain(`task ${id} done`);
    const f = await follow;
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout).toBe('hello\nworld\n');
    expect(f.stderr).toContain('ended: succeeded');

    const logs = await runCli(['logs', String(id)], env);
    expect(logs.stdout).toBe('hello\nworld\n');
    const show = await runCli(['show', String(id)], env);
    expect(show.stdout).toContain(`#1 run ${a.runId} on cli-test-worker: succeeded, exit code 0`);
    expect(show.stdout).toContain('usage: peak memory 4MiB of 512MiB requested');

    // --wait on a task that fails at once (exit 2 is not retried): exit code 1.
    const failing = runCli(['submit', '--wait', '--json', '--attempts', '1', '--', 'false'], env);
    let fid = 0;
    for (let i = 0; i < 100 && !fid; i++) {
      const page = JSON.parse((await runCli(['ls', '--json', '--status', 'waiting,in_progress'], env)).stdout);
      fid = page.tasks.find((t: { name: string }) => t.name === 'false')?.id ?? 0;
      if (!fid) await new Promise((r) => setTimeout(r, 100));
    }
    await worker.run(await worker.take(fid), ['oops\n'], 1);
    const failed = await failing;
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({ id: fid, status: 'failed' });

    const drain = await runCli(['worker', 'drain', 'cli-test-worker'], env);
    expect(drain.code, drain.stderr).toBe(0);
    expect(drain.stdout).toContain('worker cli-test-worker is draining');
    const nope = await runCli(['worker', 'drain', 'no-such-worker'], env);
    expect(nope.code).toBe(4);
    expect(nope.stderr).toBe('tsched: no worker no-such-worker\n');
  });
});

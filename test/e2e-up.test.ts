// Issue 2's end-to-end check: the real `tsched up`, the real CLI, a real local worker running a real
// process; then a restart that keeps the task and its logs.

import { afterAll, describe, expect, it } from 'vitest';
import { cli, startUp, type UpProcess, waitFor } from './helpers/processes.js';

describe('tsched up end to end', () => {
  let up: UpProcess | undefined;
  afterAll(async () => {
    await up?.stop('SIGKILL');
  });

  it('submits through the CLI, runs, shows logs, and keeps everything across a restart', async () => {
    up = await startUp({ args: ['--cpus', '2', '--memory', '2GiB'] });
    const env = { TSCHED_CONFIG: up.configPath };

    // `tsched up` wrote the CLI config: no flags needed.
    const cfg = await cli(['config', '--json'], env);
    expect(cfg.code).toBe(0);
    expect(JSON.parse(cfg.stdout)).toMatchObject({ url: up.url });

    const sub = await cli(['submit', '--', 'echo', 'hello'], env);
    expect(sub.code, sub.stderr).toBe(0);
    const id = sub.stdout.trim();
    expect(id).toMatch(/^\d+$/);

    const done = await waitFor('task done', async () => {
      const r = await cli(['show', id, '--json'], env);
      const j = JSON.parse(r.stdout);
      return j.task.status === 'done' ? j : null;
    });
    expect(done.runs).toHaveLength(1);
    expect(done.runs[0]).toMatchObject({ outcome: 'succeeded', exitCode: 0, attempt: 1 });

    const logs = await cli(['logs', id], env);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('hello');

    // A task that cannot start yet (it needs more CPUs than the local worker has) keeps waiting.
    const big = await cli(['submit', '--cpus', '64', '--', 'echo', 'never'], env);
    expect(big.code, big.stderr).toBe(0);
    const bigId = big.stdout.trim();

    const ls = await cli(['ls', '--json'], env);
    const listed = JSON.parse(ls.stdout);
    const tasks = Array.isArray(listed) ? listed : listed.tasks;
    expect(tasks.map((t: { id: number }) => String(t.id))).toEqual(expect.arrayContaining([id, bigId]));

    // Ctrl-C, start again on the same data directory: nothing is lost.
    expect(await up.stop('SIGINT')).toBe(0);
    up = await startUp({ dataDir: up.dataDir, args: ['--cpus', '2', '--memory', '2GiB'] });
    const env2 = { TSCHED_CONFIG: up.configPath };
    const after = JSON.parse((await cli(['show', id, '--json'], env2)).stdout);
    expect(after.task.status).toBe('done');
    expect((await cli(['logs', id], env2)).stdout).toContain('hello');
    const waiting = JSON.parse((await cli(['show', bigId, '--json'], env2)).stdout);
    expect(waiting.task.status).toBe('waiting');
    expect(waiting.explanation?.message ?? '').toMatch(/cpu|CPU/);
  });
});

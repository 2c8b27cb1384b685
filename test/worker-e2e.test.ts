// Issue 6 through the real server: live log following over the API, distinct ports that really bind, a
// worker killed with SIGKILL and restarted cleaning up what it left, and a Docker task end to end.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBusyboxImage, TEST_IMAGE } from './helpers/docker-image.js';
import { alive, api, startUp, startWorkerProc, tempDir, type UpProcess, type WorkerProcess, waitFor } from './helpers/processes.js';
import { dockerAvailable, requireService } from './helpers/services.js';

describe('worker agent end to end (real server, real worker processes)', () => {
  let up: UpProcess;
  let call: ReturnType<typeof api>;
  const workers: WorkerProcess[] = [];
  const scratch = tempDir('tsched-we-');

  beforeAll(async () => {
    up = await startUp({ args: ['--no-local-worker', '--lease', '3s'] });
    call = api(up.url, up.token);
  });
  afterAll(async () => {
    for (const w of workers) await w.stop('SIGKILL');
    await up?.stop('SIGKILL');
  });

  const show = async (id: number) => (await call('GET', `/v1/tasks/${id}`)).json;
  const finished = (id: number, ms = 30_000) =>
    waitFor(
      `task ${id} to finish`,
      async () => {
        const s = await show(id);
        return ['done', 'failed', 'cancelled'].includes(s.task.status) ? s : null;
      },
      ms,
    );

  it('follows a chatty task’s output live through the API (server-sent events)', async () => {
    workers.push(await startWorkerProc(up, { name: 'we-1', args: ['--cpus', '2', '--memory', '2GiB', '--ports', '21000-21009'] }));
    const r = await call('POST', '/v1/tasks', {
      command: ['sh', '-c', 'for i in $(seq 1 30); do echo line $i; sleep 0.1; done'],
      constraints: {},
    });
    const id = r.json.task.id as number;
    const res = await fetch(`${up.url}/v1/tasks/${id}/logs?follow=true`, { headers: { authorization: `Bearer ${up.token}` } });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    let firstLineAt = 0;
    let startedAt = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value);
      if (!firstLineAt && /line 1\b/.test(text)) {
        firstLineAt = Date.now();
        startedAt = (await show(id)).runs[0]?.startedAt ?? 0;
      }
      if (/event: end/.test(text)) break;
    }
    // Output arrives while the task still runs (it takes ~3 s), within about a second of being printed.
    const s = await show(id);
    expect(firstLineAt).toBeGreaterThan(0);
    expect(firstLineAt).toBeLessThan(s.runs[0].finishedAt);
    expect(firstLineAt - startedAt).toBeLessThan(1500);
    for (let i = 1; i <= 30; i++) expect(text).toContain(`line ${i}\\n`);
    expect(text).toMatch(/event: end\ndata: \{[^\n]*"outcome":"succeeded"/);
  });

  it('gives two tasks distinct ports that they can really bind', async () => {
    const script = `node -e "const s=require('net').createServer().listen(+process.env.PORT,'127.0.0.1',()=>{console.log('bound',process.env.PORT);setTimeout(()=>s.close(),1500)})"`;
    const ids: number[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await call('POST', '/v1/tasks', { command: ['sh', '-c', script], resources: { cpus: 0.5, ports: 1 } });
      ids.push(r.json.task.id);
    }
    const runs = [];
    for (const id of ids) {
      const s = await finished(id);
      expect(s.task.status).toBe('done');
      runs.push(s.runs[0]);
    }
    const ports = runs.map((r) => r.allocation.ports[0]);
    expect(new Set(ports).size).toBe(2);
    for (const p of ports) expect(p).toBeGreaterThanOrEqual(21000);
    for (const [i, id] of ids.entries()) {
      const logs = (await call('GET', `/v1/tasks/${id}/logs`)).json.chunks.map((c: { data: string }) => c.data).join('');
      expect(logs).toContain(`bound ${ports[i]}`);
    }
  });

  it('a worker killed with SIGKILL and restarted cleans up what it left behind; the task runs again', async () => {
    const workDir = tempDir('tsched-we-restart-');
    const w = await startWorkerProc(up, { name: 'we-2', workDir, args: ['--cpus', '1', '--memory', '1GiB', '--labels', 'pool=restart'] });
    workers.push(w);
    const pidFile = join(scratch, 'left-behind');
    const r = await call('POST', '/v1/tasks', {
      command: ['sh', '-c', `if [ "$TSCHED_ATTEMPT" = 1 ]; then echo $$ > ${pidFile}; exec sleep 1000; fi; echo second attempt`],
      constraints: { pool: 'restart' },
      retry: { backoff: '100ms' },
    });
    const id = r.json.task.id as number;
    await waitFor('the first attempt to run', async () => (await show(id)).runs[0]?.state === 'running');
    const pid = Number(await waitFor('its pid', async () => readFileSync(pidFile, 'utf8').trim() || null));
    expect(alive(pid)).toBe(true);
    w.proc.kill('SIGKILL');
    await new Promise((res) => w.proc.once('exit', res));
    workers.splice(workers.indexOf(w), 1);
    // The orphan survives its worker (it has its own process group) …
    expect(alive(pid)).toBe(true);
    // … until the worker comes back on the same work directory: it kills what its previous life left.
    const again = await startWorkerProc(up, {
      name: 'we-2',
      workDir,
      args: ['--cpus', '1', '--memory', '1GiB', '--labels', 'pool=restart'],
    });
    workers.push(again);
    await waitFor('the leftover process to be killed', async () => !alive(pid), 10_000);
    const s = await finished(id);
    expect(s.task.status).toBe('done');
    expect(s.runs[0]).toMatchObject({ outcome: 'lost' });
    expect(s.runs.at(-1)).toMatchObject({ outcome: 'succeeded', workerName: 'we-2' });
  });

  it('runs a Docker task end to end: image, limits, published port, logs, container removed', async () => {
    if (!requireService('Docker', dockerAvailable())) return;
    await ensureBusyboxImage();
    const w = await startWorkerProc(up, {
      name: 'we-docker',
      args: [
        '--cpus',
        '1',
        '--memory',
        '1GiB',
        '--executors',
        'docker',
        '--ports',
        '21100-21109',
        '--labels',
        'pool=docker',
        '--pull-policy',
        'never',
      ],
    });
    workers.push(w);
    const r = await call('POST', '/v1/tasks', {
      image: TEST_IMAGE,
      command: [
        'sh',
        '-c',
        'echo "in a container on $PORT"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max',
      ],
      resources: { cpus: 0.5, memory: '64Mi', ports: 1 },
      constraints: { pool: 'docker' },
    });
    expect(r.status).toBe(201);
    const s = await finished(r.json.task.id, 60_000);
    expect(s.task.status).toBe('done');
    const logs = (await call('GET', `/v1/tasks/${r.json.task.id}/logs`)).json.chunks.map((c: { data: string }) => c.data).join('');
    expect(logs).toContain(`in a container on ${s.runs[0].allocation.ports[0]}`);
    expect(logs).toContain(String(64 * 1024 * 1024));
    const left = execFileSync('docker', ['ps', '-aq', '--filter', `label=tsched.run=${s.runs[0].id}`], { encoding: 'utf8' }).trim();
    expect(left).toBe('');
    // A memory hog in a container is killed at its limit.
    const hog = await call('POST', '/v1/tasks', {
      image: TEST_IMAGE,
      command: ['sh', '-c', 'dd if=/dev/zero bs=200M count=1 | tr "\\0" a | wc -c'],
      resources: { cpus: 0.5, memory: '32Mi' },
      totalAttempts: 1,
      constraints: { pool: 'docker' },
    });
    const hs = await finished(hog.json.task.id, 60_000);
    expect(hs.task.status).toBe('failed');
    expect(hs.runs[0].reason).toMatch(/resource_exceeded: memory/);
  });
});

import { describe, expect, it } from 'vitest';
import type { Run, Task, WorkerWithLoad } from '../client/index.js';
import { normalizeTask } from '../domain/task-spec.js';
import { age, resources, table, taskDetail, taskTable, workerTable } from './format.js';

const NOW = Date.parse('2030-01-01T12:00:00Z');

function task(over: Partial<Task> = {}): Task {
  const spec = normalizeTask({ name: 'echo hi', command: ['echo', 'hi'] });
  return {
    ...spec,
    id: 7,
    owner: 'admin',
    status: 'waiting',
    attempts: 0,
    dueAt: NOW - 5000,
    startDeadline: NOW + 3_600_000,
    createdAt: NOW - 5000,
    updatedAt: NOW - 5000,
    finishedAt: null,
    lastError: null,
    deadlineMissed: false,
    paused: false,
    ...over,
  };
}

describe('table', () => {
  it('aligns columns to the widest cell and leaves no trailing spaces', () => {
    expect(
      table(
        ['ID', 'NAME', 'X'],
        [
          ['1', 'a', ''],
          ['100', 'long name', 'z'],
        ],
      ),
    ).toBe(['ID   NAME       X', '1    a', '100  long name  z'].join('\n'));
  });
});

describe('age', () => {
  it('is coarse and relative', () => {
    expect(age(NOW - 3000, NOW)).toBe('3s');
    expect(age(NOW - 125_000, NOW)).toBe('2m');
    expect(age(NOW - 5 * 3_600_000, NOW)).toBe('5h');
    expect(age(NOW - 4 * 86_400_000, NOW)).toBe('4d');
    expect(age(NOW + 180_000, NOW)).toBe('in 3m');
  });
});

describe('resources', () => {
  it('reads like "1cpu 512MiB"', () => {
    expect(resources({ category: 'basic', cpus: 1000, memory: 512 * 1024 ** 2, ports: 0, portNames: [] })).toBe('1cpu 512MiB');
    expect(resources({ category: null, cpus: 500, memory: 2 * 1024 ** 3, ports: 1, portNames: ['http'] })).toBe('0.5cpu 2GiB 2 ports');
  });
});

describe('taskTable', () => {
  it('shows id, name, status, attempts used/total, resources and age', () => {
    const out = taskTable([task(), task({ id: 12, name: 'backup', status: 'in_progress', attempts: 1, createdAt: NOW - 120_000 })], NOW);
    expect(out.split('\n')).toEqual([
      'ID  NAME     STATUS       ATTEMPTS  RESOURCES    AGE',
      '7   echo hi  waiting      0/3       1cpu 512MiB  5s',
      '12  backup   in_progress  1/3       1cpu 512MiB  2m',
    ]);
  });
});

describe('workerTable', () => {
  it('shows capacity, allocated and free', () => {
    const w: WorkerWithLoad = {
      id: 'w-1',
      name: 'node-a',
      state: 'active',
      capacity: { cpus: 4000, memory: 8 * 1024 ** 3, ports: { from: 20000, to: 20009 } },
      labels: {},
      executors: ['shell'],
      enforcement: { memory: 'cgroup-v2', cpu: 'cgroup-v2' },
      version: '0.1.0',
      hostname: 'a',
      registeredAt: NOW - 60_000,
      lastSeenAt: NOW - 2000,
      allocated: { cpus: 1500, memory: 1024 ** 3, ports: [20000] },
      live: [],
    };
    const [head, row] = workerTable([w], NOW).split('\n');
    expect(head).toMatch(/^NAME\s+STATE\s+CAPACITY\s+ALLOCATED\s+FREE\s+ENFORCEMENT\s+LAST SEEN$/);
    expect(row?.split(/\s{2,}/)).toEqual([
      'node-a',
      'active',
      '4cpu 8GiB 10p',
      '1.5cpu 1GiB 1p',
      '2.5cpu 7GiB 9p',
      'mem:cgroup-v2 cpu:cgroup-v2',
      '2s ago',
    ]);
  });
});

describe('taskDetail', () => {
  it('shows every attempt with usage against the request, the explanation and the events', () => {
    const run: Run = {
      id: 3,
      taskId: 7,
      attempt: 1,
      workerId: 'w-1',
      workerName: 'node-a',
      leaseToken: 'x',
      leaseExpiresAt: NOW,
      state: 'failed',
      allocation: { cpus: 1000, memory: 512 * 1024 ** 2, ports: [], namedPorts: {} },
      assignedAt: NOW - 4000,
      startedAt: NOW - 3900,
      finishedAt: NOW - 1900,
      exitCode: 1,
      outcome: 'failed',
      reason: 'exit code 1',
      cancelRequested: false,
      usage: { peakMemory: 10 * 1024 ** 2, cpuSeconds: 0.25 },
    };
    const out = taskDetail(
      task({ attempts: 1, priority: 75 }),
      [run],
      {
        message: 'no worker has 64 free cpus',
        reasons: [{ code: 'INSUFFICIENT_CPU', workers: 1 }],
        rank: 1,
        band: 50,
        estimatedStart: null,
      },
      [{ id: 1, taskId: 7, runId: null, at: NOW - 5000, actor: 'admin', type: 'task.submitted', from: null, to: 'waiting', reason: null }],
      NOW,
    );
    expect(out).toContain('priority:         high (75)');
    expect(out).toContain('attempts:         1 of 3 used');
    expect(out).toContain('  #1 run 3 on node-a: failed, exit code 1');
    expect(out).toContain(
      'assigned 2030-01-01T11:59:56.000Z, started 2030-01-01T11:59:56.100Z, finished 2030-01-01T11:59:58.100Z (ran 2s)',
    );
    expect(out).toContain('usage: peak memory 10MiB of 512MiB requested; cpu 0.25s (allocated 1 core)');
    expect(out).toContain(
      'why it is waiting:\n  no worker has 64 free cpus\n  queue position: 1 (band 50)\n    INSUFFICIENT_CPU: 1 worker',
    );
    expect(out).toMatch(
      /events:\n {2}AT +TYPE +FROM → TO +RUN +ACTOR +REASON\n {2}2030-01-01T11:59:55\.000Z +task\.submitted +- → waiting +admin/,
    );
  });
});

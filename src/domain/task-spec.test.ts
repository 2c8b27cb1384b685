import { describe, expect, it } from 'vitest';
import { TschedError } from './errors.js';
import { normalizeTask, type TaskInput } from './task-spec.js';

function issuesOf(input: TaskInput): Array<{ path: string; message: string }> {
  try {
    normalizeTask(input);
  } catch (e) {
    expect(e).toBeInstanceOf(TschedError);
    expect((e as TschedError).code).toBe('VALIDATION_FAILED');
    return (e as TschedError).issues;
  }
  throw new Error('expected a validation error');
}

describe('normalizeTask', () => {
  it('fills defaults: basic category, 3 attempts, normal priority, shell executor', () => {
    const t = normalizeTask({ command: ['echo', 'hello'] });
    expect(t).toMatchObject({
      name: 'echo hello',
      command: ['echo', 'hello'],
      executor: 'shell',
      totalAttempts: 3,
      priority: 50,
      schedulingType: 'once',
      resources: { category: 'basic', cpus: 1000, memory: 512 * 1024 ** 2, ports: 0, portNames: [] },
    });
  });

  it('takes explicit fractional cpus, sizes, durations and named priorities', () => {
    const t = normalizeTask({
      command: ['./build.sh'],
      resources: { cpus: 0.5, memory: '1GiB', ports: 2, portNames: ['http'] },
      executionCap: '10m',
      delayTolerance: 'PT5M',
      priority: 'high',
      totalAttempts: 5,
    });
    expect(t.resources).toEqual({ category: null, cpus: 500, memory: 1024 ** 3, ports: 2, portNames: ['http'] });
    expect(t.executionCap).toBe(600_000);
    expect(t.delayTolerance).toBe(300_000);
    expect(t.priority).toBe(75);
    expect(t.totalAttempts).toBe(5);
  });

  it('expands categories', () => {
    expect(normalizeTask({ command: ['x'], resources: { category: 'premium' } }).resources).toMatchObject({
      cpus: 4000,
      memory: 8 * 1024 ** 3,
    });
  });

  it.each<[string, TaskInput, string]>([
    ['cpus -1', { command: ['x'], resources: { cpus: -1 } }, 'resources.cpus'],
    ['memory "lots"', { command: ['x'], resources: { memory: 'lots' } }, 'resources.memory'],
    ['totalAttempts 0', { command: ['x'], totalAttempts: 0 }, 'totalAttempts'],
    ['executionCap "-5m"', { command: ['x'], executionCap: '-5m' }, 'executionCap'],
    ['no command', {}, 'command'],
    ['empty command', { command: [] }, 'command'],
    ['priority "whenever"', { command: ['x'], priority: 'whenever' }, 'priority'],
    ['absolute scriptPath', { scriptPath: '/etc/passwd' }, 'scriptPath'],
    ['traversing scriptPath', { scriptPath: 'a/../../b' }, 'scriptPath'],
    ['docker without image', { command: ['x'], executor: 'docker' }, 'image'],
    ['bad zone', { command: ['x'], schedule: { type: 'daily', at: '02:30', timezone: 'Mars/Olympus' } }, 'schedule.timezone'],
    ['bad env name', { command: ['x'], env: { 'A-B': '1' } }, 'env.A-B'],
  ])('refuses %s, naming %s', (_name, input, path) => {
    const issues = issuesOf(input);
    expect(issues.map((i) => i.path)).toContain(path);
    expect(issues.find((i) => i.path === path)?.message).toMatch(/expected|not allowed|only/);
  });

  it('lists every problem at once with a batch prefix', () => {
    try {
      normalizeTask({ command: ['x'], totalAttempts: 0, resources: { cpus: -1 } }, undefined, 'tasks[2].');
      throw new Error('unreachable');
    } catch (e) {
      const issues = (e as TschedError).issues.map((i) => i.path);
      expect(issues).toEqual(expect.arrayContaining(['tasks[2].totalAttempts', 'tasks[2].resources.cpus']));
      expect((e as TschedError).message).toMatch(/^tasks\[2\]\./);
    }
  });
});

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from './errors.js';
import { type SubmitFlags, taskFromFlags } from './task-flags.js';
import { validateTasks } from './validate.js';

const dir = mkdtempSync(join(tmpdir(), 'tsched-flags-'));
const script = join(dir, 'job.sh');
writeFileSync(script, '#!/bin/sh\necho hi\n');
const map = (cmd: string[], f: SubmitFlags) => taskFromFlags(cmd, f);
const usage = (cmd: string[], f: SubmitFlags): string => {
  try {
    map(cmd, f);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('expected a UsageError');
};

describe('taskFromFlags', () => {
  it('maps a plain command', () => {
    expect(map(['echo', 'hi'], {})).toEqual({ command: ['echo', 'hi'] });
  });

  it('maps every task flag to its API field', () => {
    const t = map(['sh', '-c', 'echo $X'], {
      name: 'n',
      cpus: '0.5',
      memory: '1GiB',
      ports: '2',
      portName: ['http', 'admin,metrics'],
      category: 'Regular',
      attempts: '5',
      cap: '10m',
      delayTolerance: '5m',
      priority: 'HIGH',
      env: ['X=1', 'Y=a=b'],
      label: ['team=a,tier=b'],
      constraint: ['zone=eu'],
      shell: true,
      startAt: '2030-01-01T09:00:00Z',
      retryExitCode: ['2', '3,4'],
    });
    expect(t).toEqual({
      name: 'n',
      command: ['sh', '-c', 'echo $X'],
      shell: true,
      env: { X: '1', Y: 'a=b' },
      labels: { team: 'a', tier: 'b' },
      constraints: { zone: 'eu' },
      resources: { category: 'regular', cpus: 0.5, memory: '1GiB', ports: 2, portNames: ['http', 'admin', 'metrics'] },
      priority: 'high',
      totalAttempts: 5,
      executionCap: '10m',
      delayTolerance: '5m',
      retry: { noRetryExitCodes: [2, 3, 4] },
      startAt: '2030-01-01T09:00:00Z',
    });
    expect(validateTasks([t], () => '')).toEqual([]);
  });

  it('takes a numeric priority as a number, and --tolerance as an alias', () => {
    expect(map(['x'], { priority: '80', tolerance: '90s' })).toMatchObject({ priority: 80, delayTolerance: '90s' });
  });

  it('reads --script from a file and passes --script-path and --image through', () => {
    expect(map([], { script })).toEqual({ script: '#!/bin/sh\necho hi\n' });
    expect(map([], { scriptPath: 'jobs/a.sh' })).toEqual({ scriptPath: 'jobs/a.sh' });
    expect(map(['echo'], { image: 'busybox' })).toEqual({ command: ['echo'], image: 'busybox' });
  });

  it('builds schedules: daily at a time in a zone, weekly on days, cron implied by --cron', () => {
    expect(map(['x'], { schedule: 'daily', at: '02:30', timezone: 'Europe/London' }).schedule).toEqual({
      type: 'daily',
      at: '02:30',
      timezone: 'Europe/London',
    });
    expect(map(['x'], { schedule: 'weekly', on: 'Mon,wed', at: '09:00' }).schedule).toEqual({
      type: 'weekly',
      on: ['mon', 'wed'],
      at: '09:00',
    });
    expect(map(['x'], { schedule: 'monthly', on: '15' }).schedule).toEqual({ type: 'monthly', on: 15 });
    expect(map(['x'], { cron: '*/5 * * * *' }).schedule).toEqual({ type: 'cron', cron: '*/5 * * * *' });
  });

  it('names the flag and the bad value', () => {
    expect(usage(['x'], { cap: '10 minutes' })).toMatch(/^--cap: expected a duration.*"10 minutes"/);
    expect(usage(['x'], { delayTolerance: 'soon' })).toMatch(/^--delay-tolerance:/);
    expect(usage(['x'], { tolerance: 'soon' })).toMatch(/^--tolerance:/);
    expect(usage(['x'], { memory: '1 gig' })).toMatch(/^--memory: expected a size/);
    expect(usage(['x'], { cpus: 'two' })).toMatch(/^--cpus:/);
    expect(usage(['x'], { cpus: '0' })).toMatch(/^--cpus:/);
    expect(usage(['x'], { attempts: '0' })).toMatch(/^--attempts: expected an integer from 1 to 100/);
    expect(usage(['x'], { priority: 'asap' })).toMatch(/^--priority:/);
    expect(usage(['x'], { category: 'huge' })).toMatch(/^--category: expected one of basic, regular, premium/);
    expect(usage(['x'], { env: ['NOVALUE'] })).toMatch(/^--env: expected KEY=VALUE/);
    expect(usage(['x'], { env: ['1X=a'] })).toMatch(/^--env: "1X" is not a valid name/);
    expect(usage(['x'], { startAt: 'tomorrow' })).toMatch(/^--start-at:/);
    expect(usage(['x'], { schedule: 'hourly' })).toMatch(/^--schedule: expected one of once, daily/);
    expect(usage(['x'], { schedule: 'daily', at: '25:00' })).toMatch(/^--at:/);
    expect(usage(['x'], { schedule: 'cron' })).toMatch(/^--cron:/);
    expect(usage(['x'], { at: '02:00' })).toMatch(/^--at: only goes with --schedule/);
    expect(usage(['x'], { retryExitCode: ['300'] })).toMatch(/^--no-retry-exit-code:/);
    expect(usage([], { script: join(dir, 'missing.sh') })).toMatch(/^--script: cannot read .*missing.sh: no such file/);
    expect(usage([], { shell: true })).toMatch(/nothing to run/);
    expect(usage([], {})).toMatch(/nothing to run/);
    expect(usage(['x'], { scriptPath: 'a.sh' })).toMatch(/only one of a command, --script and --script-path/);
  });

  it('leaves semantic checks (like a bad zone) to normalizeTask via validateTasks', () => {
    const t = map(['x'], { schedule: 'daily', at: '02:30', timezone: 'Mars/Olympus' });
    expect(validateTasks([t], () => '')).toEqual([{ path: 'schedule.timezone', message: expect.stringMatching(/IANA time zone/) }]);
  });
});

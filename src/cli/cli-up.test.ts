// `tsched up` for real: the built CLI starts the embedded server with its local worker on a free port and
// a temporary data directory, writes the CLI config file, runs real processes, and stops on Ctrl-C.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, runCli } from './test-helpers.js';

let up: ChildProcess | undefined;
afterAll(() => {
  if (up && up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
});

function exitOf(p: ChildProcess): Promise<number | null> {
  return new Promise((res) => {
    if (p.exitCode !== null || p.signalCode !== null) return res(p.exitCode);
    p.once('exit', (code) => res(code));
  });
}

describe('tsched up', () => {
  it('starts on a free port, writes the config, runs tasks through the CLI, and stops on Ctrl-C', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tsched-up-'));
    const configPath = join(dataDir, 'cli', 'config.json');
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TSCHED_') && v !== undefined) base[k] = v;
    const proc = spawn(
      process.execPath,
      [BIN, 'up', '--port', '0', '--data-dir', dataDir, '--cpus', '1', '--memory', '1GiB', '--executors', 'shell', '--json'],
      {
        env: { ...base, TSCHED_CONFIG: configPath, TSCHED_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    up = proc;
    let stdout = '';
    let stderr = '';
    proc.stderr!.on('data', (d) => {
      stderr += d;
    });
    const first = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`tsched up printed nothing in 30s:\n${stderr}`)), 30_000);
      proc.stdout!.on('data', (d) => {
        stdout += d;
        const nl = stdout.indexOf('\n');
        if (nl >= 0) {
          clearTimeout(timer);
          res(stdout.slice(0, nl));
        }
      });
      proc.once('exit', (code) => rej(new Error(`tsched up exited with ${code}:\n${stderr}`)));
    });
    const info = JSON.parse(first) as { url: string; token: string; workerToken: string; dataDir: string; configPath: string };
    expect(info.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(info.url).not.toBe('http://127.0.0.1:0');
    expect(info).toMatchObject({ dataDir, configPath });

    // The config file: the URL and token the CLI will use, private to the user.
    expect(JSON.parse(readFileSync(configPath, 'utf8'))).toEqual({ url: info.url, token: info.token });
    expect(statSync(configPath).mode & 0o777).toBe(0o600);
    const env = { TSCHED_CONFIG: configPath };
    const cfg = JSON.parse((await runCli(['config', '--json'], env)).stdout);
    expect(cfg).toMatchObject({ url: info.url, urlSource: 'file', tokenSource: 'file' });

    // A real process on the local worker, waited for.
    const sub = await runCli(
      ['submit', '--wait', '--name', 'greet', '--shell', '--', 'echo "hello $WHO"; echo oops >&2'],
      { ...env },
      undefined,
      60_000,
    );
    expect(sub.code, sub.stderr).toBe(0);
    const id = sub.stdout.trim();
    expect(id).toMatch(/^\d+$/);

    const ls = await runCli(['ls'], env);
    expect(ls.stdout).toMatch(new RegExp(`^${id}\\s+greet\\s+done\\s+1/3\\s+1cpu 512MiB\\s+\\d+s$`, 'm'));

    const show = await runCli(['show', id], env);
    expect(show.stdout).toMatch(/#1 run \d+ on \S+: succeeded, exit code 0/);
    expect(show.stdout).toContain('command:          \'echo "hello $WHO"; echo oops >&2\' (via /bin/sh -c)');

    const logs = await runCli(['logs', id], env);
    expect(logs.stdout).toBe('hello \n');
    expect(logs.stderr).toBe('oops\n');

    // A manifest with env, followed live.
    const m = await runCli(
      ['submit', '-f', '-'],
      env,
      'name: counted\nshell: true\ncommand: ["for i in 1 2 3; do echo $N$i; sleep 0.2; done"]\nenv: {N: n}\n',
    );
    expect(m.code, m.stderr).toBe(0);
    const f = await runCli(['logs', '-f', m.stdout.trim()], env, undefined, 60_000);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout).toBe('n1\nn2\nn3\n');
    expect(f.stderr).toMatch(/run \d+ ended: succeeded; task done/);

    const workers = await runCli(['workers'], env);
    expect(workers.stdout).toMatch(/\s+active\s+1cpu 1GiB/);

    // A second worker joins with `tsched worker`, takes a task pinned to it by label, then drains and stops.
    const workDir = mkdtempSync(join(tmpdir(), 'tsched-w2-'));
    const w2 = spawn(
      process.execPath,
      [
        BIN,
        'worker',
        '--server',
        info.url,
        '--token',
        info.workerToken,
        '--name',
        'w2',
        '--cpus',
        '1',
        '--memory',
        '512MiB',
        '--labels',
        'pool=w2',
        '--executors',
        'shell',
        '--work-dir',
        workDir,
      ],
      { env: base, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let w2out = '';
    w2.stdout!.on('data', (d) => {
      w2out += d;
    });
    w2.stderr!.on('data', (d) => {
      w2out += d;
    });
    try {
      for (let i = 0; i < 100 && !w2out.includes('connected'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(w2out).toContain(`tsched worker w2 connected to ${info.url}`);
      expect((await runCli(['workers'], env)).stdout).toMatch(/^w2\s+active\s+1cpu 512MiB\s+/m);
      const pinned = await runCli(
        ['submit', '--wait', '--constraint', 'pool=w2', '--cpus', '0.5', '--memory', '64MiB', '--', 'echo', 'on w2'],
        env,
        undefined,
        60_000,
      );
      expect(pinned.code, pinned.stderr).toBe(0);
      expect((await runCli(['show', pinned.stdout.trim()], env)).stdout).toMatch(/#1 run \d+ on w2: succeeded/);
      const drained = await runCli(['worker', 'drain', 'w2'], env);
      expect(drained.stdout).toBe('worker w2 is draining: it takes no new tasks; running ones finish\n');
      w2.kill('SIGINT');
      expect(await exitOf(w2)).toBe(0);
      expect(w2out).toContain('tsched: worker stopped');
    } finally {
      if (w2.exitCode === null && w2.signalCode === null) w2.kill('SIGKILL');
    }

    proc.kill('SIGINT');
    expect(await exitOf(proc)).toBe(0);
    expect(stderr).toContain('tsched: stopped');
  });
});

// Helpers that start the REAL tsched processes (built into dist/ by `npm test`) for integration tests.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/tsched.js');

export function tempDir(prefix = 'tsched-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TschedProcess {
  proc: ChildProcess;
  output(): string;
  /** Signals the process and waits for it to exit (SIGKILL after 20 s); resolves with its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Spawns the real `tsched` with `args` and waits until its output matches `ready` (the match is returned);
 * rejects with everything it printed if it exits first or takes longer than `timeoutMs`.
 */
export async function spawnTsched(
  args: string[],
  ready: RegExp,
  opts: { env?: Record<string, string>; timeoutMs?: number; what?: string } = {},
): Promise<TschedProcess & { match: RegExpExecArray }> {
  const proc = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, TSCHED_LOG_LEVEL: 'warn', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  proc.stderr!.on('data', (d) => {
    out += d;
  });
  const what = opts.what ?? `tsched ${args[0]}`;
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const match = await new Promise<RegExpExecArray>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${what} was not ready within ${timeoutMs / 1000}s:\n${out}`)), timeoutMs);
    const check = () => {
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m);
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`${what} exited with ${code}:\n${out}`));
    });
  });
  return {
    proc,
    match,
    output: () => out,
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise((res) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return res(proc.exitCode);
        const killer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
        proc.once('exit', (code) => {
          clearTimeout(killer);
          res(code);
        });
        proc.kill(signal);
      }),
  };
}

/** Waits until the server's /healthz answers. */
export async function waitHealthy(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface UpProcess {
  url: string;
  token: string;
  workerToken: string;
  dataDir: string;
  configPath: string;
  proc: ChildProcess;
  output(): string;
  /** Stops with a signal and waits for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `tsched up` on a free port with a temporary (or given) data directory. */
export async function startUp(opts: { dataDir?: string; args?: string[]; env?: Record<string, string> } = {}): Promise<UpProcess> {
  const dataDir = opts.dataDir ?? tempDir();
  const configPath = join(dataDir, 'cli-config.json');
  const p = await spawnTsched(['up', '--port', '0', '--data-dir', dataDir, ...(opts.args ?? [])], /(http:\/\/127\.0\.0\.1:\d+)/, {
    env: { TSCHED_CONFIG: configPath, ...opts.env },
    what: 'tsched up',
  });
  const url = p.match[1] as string;
  // The URL is printed once the server listens; wait for /healthz to be sure.
  await waitHealthy(url);
  const creds = JSON.parse(readFileSync(join(dataDir, 'credentials.json'), 'utf8')) as { token: string; workerToken: string };
  return {
    url,
    token: creds.token,
    workerToken: creds.workerToken,
    dataDir,
    configPath,
    proc: p.proc,
    output: p.output,
    stop: (signal: NodeJS.Signals = 'SIGINT') => p.stop(signal),
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI. */
export function cli(args: string[], env: Record<string, string> = {}, input?: string): Promise<CliResult> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
    p.on('exit', (code) => res({ code, stdout, stderr }));
  });
}

/** A tiny JSON API client for tests. */
export function api(url: string, token: string | null) {
  return async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(url + path, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, json, text, headers: res.headers };
  };
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  timeoutMs = 20_000,
  everyMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export interface WorkerProcess {
  name: string;
  proc: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a real `tsched worker` process against a server. */
export async function startWorkerProc(
  server: { url: string; workerToken: string },
  opts: { name: string; args?: string[]; workDir?: string; env?: Record<string, string> },
): Promise<WorkerProcess> {
  const workDir = opts.workDir ?? tempDir(`tsched-${opts.name}-`);
  const p = await spawnTsched(
    ['worker', '--server', server.url, '--token', server.workerToken, '--name', opts.name, '--work-dir', workDir, ...(opts.args ?? [])],
    /connected to/,
    { ...(opts.env ? { env: opts.env } : {}), what: `worker ${opts.name}` },
  );
  return { name: opts.name, proc: p.proc, output: p.output, stop: p.stop };
}

/** Whether a process exists (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

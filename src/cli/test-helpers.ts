// Test helpers: run the real built CLI (`node bin/tsched.js`) the way a user does.

import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'tsched.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with a clean environment: no TSCHED_* from the developer's shell, a private config path. */
export function runCli(args: string[], env: Record<string, string> = {}, input?: string, timeoutMs = 30_000): Promise<CliResult> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TSCHED_') && v !== undefined) base[k] = v;
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...base, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      rej(new Error(`tsched ${args.join(' ')} did not finish in ${timeoutMs / 1000}s\n${stdout}\n${stderr}`));
    }, timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
    p.stdin.end(input ?? '');
  });
}

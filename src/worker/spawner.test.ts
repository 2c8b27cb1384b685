// The spawner helper against real processes: events in order, exec failures with their errno, output split
// anywhere (even inside a UTF-8 character), and a helper that dies mid-run.

import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spawner, type SpawnRequest } from './spawner.js';

let dir: string;
let sp: Spawner | null;

beforeAll(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'tsched-spawner-'));
  sp = await Spawner.start();
  if (!sp) console.warn('[worker tests] no perl here: the spawner helper is not tested (the executor uses Node spawn)');
});

afterAll(async () => {
  await sp?.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

interface Seen {
  events: string[];
  pid: number | null;
  out: string;
  err: string;
  fail: string | null;
  exit: { code: number | null; signal: string | null } | null;
}

function run(s: Spawner, req: Partial<SpawnRequest> & { argv: string[] }): Promise<Seen> {
  const seen: Seen = { events: [], pid: null, out: '', err: '', fail: null, exit: null };
  return new Promise((resolve) => {
    s.spawn(
      {
        runId: Math.floor(Math.random() * 1e9),
        cwd: join(dir, `r${Math.random()}`),
        procsFiles: [],
        env: { PATH: '/usr/bin:/bin' },
        ...req,
      },
      {
        onPid: (pid) => {
          seen.events.push('P');
          seen.pid = pid;
        },
        onFail: (code, msg) => {
          seen.events.push('F');
          seen.fail = `${code} ${msg}`;
        },
        onData: (stream, data) => {
          if (stream === 'stdout') seen.out += data;
          else seen.err += data;
        },
        onExit: (code, signal) => {
          seen.events.push('X');
          seen.exit = { code, signal };
        },
        onDone: () => {
          seen.events.push('D');
          resolve(seen);
        },
      },
    );
  });
}

describe('spawner helper', () => {
  it('runs a task in its own session and a directory it makes, with only the given env', async () => {
    if (!sp) return;
    const cwd = join(dir, 'made-here');
    const r = await run(sp, {
      cwd,
      env: { PATH: '/usr/bin:/bin', ONLY: 'this' },
      argv: ['/bin/sh', '-c', 'echo "$ONLY $HOME $(pwd)"; ps -o sid= -p $$; echo e >&2; exit 4'],
    });
    expect(r.events).toEqual(['P', 'X', 'D']);
    expect(r.out.split('\n')[0]).toBe(`this  ${cwd}`);
    expect(Number(r.out.split('\n')[1])).toBe(r.pid); // session leader
    expect(r.err).toBe('e\n');
    expect(r.exit).toEqual({ code: 4, signal: null });
    expect(await sp.rmdir(cwd)).toBeNull();
    expect(await sp.rmdir(cwd)).toBe('ENOENT');
  });

  it('reports an exec failure with its errno, then the exit and the end', async () => {
    if (!sp) return;
    const r = await run(sp, { argv: ['/nonexistent/prog'] });
    expect(r.events).toEqual(['F', 'X', 'D']);
    expect(r.fail).toMatch(/^ENOENT /);
  });

  it('reports a signal death by name and keeps multi-byte characters whole', async () => {
    if (!sp) return;
    // 70 000 × "é" (2 bytes) crosses the helper's 64 KiB reads at an odd offset.
    const r = await run(sp, {
      argv: [process.execPath, '-e', 'process.stdout.write("é".repeat(70000), () => process.kill(process.pid, "SIGTERM"))'],
    });
    expect(r.out).toBe('é'.repeat(70000));
    expect(r.exit).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('ends the runs it held when it dies, and refuses new ones', async () => {
    const own = await Spawner.start();
    if (!own) return;
    let pid = 0;
    const ended = new Promise<Seen>((resolve) => {
      const seen: Seen = { events: [], pid: null, out: '', err: '', fail: null, exit: null };
      own.spawn(
        { runId: 1, cwd: join(dir, 'dies'), procsFiles: [], env: {}, argv: ['/bin/sleep', '30'] },
        {
          onPid: (p) => {
            pid = p;
          },
          onFail: () => {},
          onData: () => {},
          onExit: (code, signal) => {
            seen.exit = { code, signal };
          },
          onDone: () => resolve(seen),
        },
      );
    });
    while (pid === 0) await new Promise((r) => setTimeout(r, 10));
    process.kill(own.pid as number, 'SIGKILL');
    const r = await ended;
    expect(r.exit).toEqual({ code: null, signal: 'SIGKILL' });
    expect(own.alive).toBe(false);
    process.kill(-pid, 'SIGKILL'); // the orphan, as the executor's group kill does
    const next = await run(own, { argv: ['/bin/true'] });
    expect(next.events).toEqual(['F', 'X', 'D']);
    expect(next.fail).toMatch(/^EHELPER /);
  });
});

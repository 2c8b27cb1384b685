// The spawner helper against real processes, for both builds (native and Perl): events in order, exec
// failures with their errno, output split anywhere (even inside a UTF-8 character), and a helper that dies
// mid-run. A build this machine cannot run is skipped with a notice, and fails the run under CI=true.

import { existsSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NATIVE_SPAWNER, Spawner, type SpawnerKind, type SpawnRequest } from './spawner.js';

let dir: string;

beforeAll(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'tsched-spawner-'));
});

afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const MISSING: Record<SpawnerKind, string> = {
  native: `the native spawner helper is not built (${NATIVE_SPAWNER}; npm run build needs a C compiler)`,
  perl: 'no perl here',
};

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

describe('spawner helper start', () => {
  it('falls back to the Perl helper, with a warning, when the native build does not run here', async () => {
    const broken = join(dir, 'broken-spawner');
    // Stands for a binary built against another C library: it exits before answering anything.
    await fsp.writeFile(broken, '#!/bin/sh\necho "cannot load" >&2\nexit 1\n', { mode: 0o755 });
    const warnings: string[] = [];
    const sp = await Spawner.start((m) => warnings.push(m), undefined, broken);
    if (!sp) {
      if (process.env.CI === 'true') throw new Error('CI=true: no perl here');
      console.warn('[worker tests] SKIPPING the fallback check: no perl here');
      return;
    }
    try {
      expect(sp.kind).toBe('perl');
      expect(warnings).toEqual([expect.stringContaining('does not run here (EHELPER); using the Perl helper')]);
    } finally {
      await sp.close();
    }
    expect(await Spawner.start(undefined, 'native', broken)).toBeNull();
  });

  it('names TSCHED_SPAWNER and what it takes when its value is wrong, and starts the default', async () => {
    const warnings: string[] = [];
    process.env.TSCHED_SPAWNER = 'fast';
    let sp: Spawner | null = null;
    try {
      sp = await Spawner.start((m) => warnings.push(m));
    } finally {
      delete process.env.TSCHED_SPAWNER;
    }
    await sp?.close();
    expect(warnings).toContain('TSCHED_SPAWNER: expected native or perl, got "fast"; using the default (native when built, else perl)');
  });
});

describe.each(['native', 'perl'] as const)('spawner helper (%s)', (kind) => {
  let sp: Spawner | null = null;
  beforeAll(async () => {
    sp = await Spawner.start(undefined, kind);
    if (!sp && process.env.CI === 'true') throw new Error(`CI=true: ${MISSING[kind]}`);
    if (!sp) console.warn(`[worker tests] SKIPPING the ${kind} spawner helper's tests: ${MISSING[kind]}`);
  });
  afterAll(async () => {
    await sp?.close();
  });

  it('starts the build it was asked for', () => {
    if (!sp) return;
    expect(sp.kind).toBe(kind);
  });

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

  it("finds a bare command on the task's own PATH, not the worker's", async () => {
    if (!sp) return;
    const bin = join(dir, `bin-${kind}`);
    await fsp.mkdir(bin);
    await fsp.writeFile(join(bin, 'only-here'), '#!/bin/sh\necho found "$1"\n', { mode: 0o755 });
    const ok = await run(sp, { argv: ['only-here', 'it'], env: { PATH: `${bin}:/usr/bin:/bin` } });
    expect(ok.events).toEqual(['P', 'X', 'D']);
    expect(ok.out).toBe('found it\n');
    const missing = await run(sp, { argv: ['only-here'], env: { PATH: '/usr/bin:/bin' } });
    expect(missing.fail).toMatch(/^ENOENT /);
  });

  it('fails a run whose cgroup or directory cannot be entered, naming it', async () => {
    if (!sp) return;
    const noCgroup = await run(sp, { argv: ['/bin/true'], procsFiles: [join(dir, 'no-such-cgroup', 'cgroup.procs')] });
    expect(noCgroup.events).toEqual(['F', 'X', 'D']);
    expect(noCgroup.fail).toContain('ECGROUP could not join cgroup');
    expect(noCgroup.fail).toContain('no-such-cgroup');
    expect(noCgroup.exit).toEqual({ code: 127, signal: null });
    const file = join(dir, `a-file-${kind}`);
    await fsp.writeFile(file, '');
    const noDir = await run(sp, { argv: ['/bin/true'], cwd: join(file, 'run') });
    expect(noDir.events).toEqual(['F', 'X', 'D']);
    expect(noDir.fail).toMatch(/^ENOTDIR mkdir .*a-file-/);
  });

  it('ends a run whose escaped child keeps its output open a second or two after its exit', async () => {
    if (!sp) return;
    const t0 = Date.now();
    let exitedAt = 0;
    const r = await new Promise<Seen & { doneAt: number }>((resolve) => {
      const seen = { events: [] as string[], pid: null, out: '', err: '', fail: null, exit: null, doneAt: 0 };
      sp?.spawn(
        {
          runId: 7,
          cwd: join(dir, `escape-${kind}`),
          procsFiles: [],
          env: { PATH: '/usr/bin:/bin' },
          argv: ['/bin/sh', '-c', 'echo hi; sleep 5 & exit 0'],
        },
        {
          onPid: () => seen.events.push('P'),
          onFail: () => seen.events.push('F'),
          onData: (_s, d) => {
            seen.out += d;
          },
          onExit: () => {
            seen.events.push('X');
            exitedAt = Date.now();
          },
          onDone: () => {
            seen.events.push('D');
            seen.doneAt = Date.now();
            resolve(seen);
          },
        },
      );
    });
    expect(r.events).toEqual(['P', 'X', 'D']);
    expect(r.out).toBe('hi\n');
    expect(exitedAt - t0).toBeLessThan(1000);
    expect(r.doneAt - exitedAt).toBeGreaterThanOrEqual(900);
    expect(r.doneAt - exitedAt).toBeLessThan(4000);
  });

  it('runs many at once, each with its own output and exit code', async () => {
    if (!sp) return;
    const s = sp;
    const all = await Promise.all(
      Array.from({ length: 200 }, (_, i) => run(s, { argv: ['/bin/sh', '-c', `echo out${i}; echo err${i} >&2; exit ${i % 7}`] })),
    );
    all.forEach((r, i) => {
      expect(r.events).toEqual(['P', 'X', 'D']);
      expect(r.out).toBe(`out${i}\n`);
      expect(r.err).toBe(`err${i}\n`);
      expect(r.exit).toEqual({ code: i % 7, signal: null });
    });
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

  it('removes run directories (the native build parks an untouched one for the next run) and no other', async () => {
    if (!sp) return;
    const parent = join(dir, `parent-${kind}`);
    await fsp.mkdir(parent);
    const first = join(parent, '1');
    const a = await run(sp, { cwd: first, argv: ['/bin/true'] });
    expect(a.exit).toEqual({ code: 0, signal: null });
    const ino = (await fsp.stat(first)).ino;
    expect(await sp.rmdir(first)).toBeNull();
    expect(existsSync(first)).toBe(false);
    const parked = (await fsp.readdir(parent)).filter((n) => n.startsWith('.tsched-free-'));
    expect(parked.length).toBe(kind === 'native' ? 1 : 0);
    const second = join(parent, '2');
    const b = await run(sp, { cwd: second, argv: ['/bin/sh', '-c', 'ls -A; echo x > mine'] });
    expect(b.out).toBe(''); // it starts empty
    if (kind === 'native') expect((await fsp.stat(second)).ino).toBe(ino);
    expect(await fsp.readdir(parent)).toEqual(['2']);
    // One the task left files in, or changed, is not parked: the worker removes it itself.
    expect(await sp.rmdir(second)).toBe('ENOTEMPTY');
    await fsp.rm(join(second, 'mine'));
    await fsp.chmod(second, 0o700);
    expect(await sp.rmdir(second)).toBeNull();
    expect(await fsp.readdir(parent)).toEqual([]); // removed, not parked
  });

  it('ends the runs it held when it dies, and refuses new ones', async () => {
    const own = await Spawner.start(undefined, kind);
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

// The shell executor against real processes, real cgroups (when this machine has them) and real files.

import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WireAssignment } from '../protocol/worker-api.js';
import { type Cgroups, detectCgroups } from './cgroups.js';
import { ShellExecutor } from './executors/shell.js';
import type { ExecResult } from './executors/types.js';
import { RunLogBuffer } from './log-buffer.js';
import { PidRecords } from './pids.js';
import { RssWatcher } from './rss-watch.js';
import { assignment, RecordingSink } from './test-helpers.js';

let workDir: string;
let scriptsRoot: string;
let cgroups: Cgroups | null;
let rss: RssWatcher;
let pids: PidRecords;

function executor(over: { cgroups?: Cgroups | null; keepFailedWorkDirs?: boolean; killGraceMs?: number } = {}) {
  return new ShellExecutor({
    workDir,
    scriptsRoot,
    cgroups: over.cgroups === undefined ? cgroups : over.cgroups,
    rssWatcher: rss,
    pids,
    killGraceMs: over.killGraceMs ?? 500,
    keepFailedWorkDirs: over.keepFailedWorkDirs,
  });
}

async function run(
  a: Partial<WireAssignment>,
  ex = executor(),
): Promise<{ result: ExecResult; logs: RecordingSink; started: number | null; a: WireAssignment }> {
  const full = assignment(a);
  const logs = new RecordingSink();
  let started: number | null = null;
  const r = ex.start(full, { logs, onStarted: (at) => (started = at) });
  const result = await r.done;
  await ex.close();
  return { result, logs, started, a: full };
}

/** Pids whose session is `sid` (the run leader makes its own session). */
function sessionMembers(sid: number): number[] {
  const out: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // A zombie is dead already, merely not reaped yet by its (re)parent.
      if ((Number(f[3]) === sid || Number(f[2]) === sid) && f[0] !== 'Z' && f[0] !== 'X') out.push(Number(n));
    } catch {
      /* exited */
    }
  }
  return out;
}

beforeAll(async () => {
  workDir = await fsp.mkdtemp(join(tmpdir(), 'tsched-shell-'));
  scriptsRoot = join(workDir, 'scripts');
  await fsp.mkdir(join(scriptsRoot, 'sub'), { recursive: true });
  await fsp.writeFile(join(scriptsRoot, 'sub', 'hello.sh'), 'echo "hello from $0 with $1"\n');
  await fsp.writeFile(join(workDir, 'outside.sh'), 'echo escaped\n');
  await fsp.symlink(join(workDir, 'outside.sh'), join(scriptsRoot, 'leak.sh'));
  await fsp.symlink(join(scriptsRoot, 'sub', 'hello.sh'), join(scriptsRoot, 'inside-link.sh'));
  cgroups = await detectCgroups(`test-${process.pid}`);
  rss = new RssWatcher(100);
  pids = new PidRecords(workDir);
  await pids.init();
});

afterAll(async () => {
  rss.close();
  await cgroups?.close?.();
  await fsp.rm(workDir, { recursive: true, force: true });
});

describe('shell executor', () => {
  it('detects how it can enforce limits on this machine', () => {
    const v1 = existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') && process.getuid?.() === 0;
    if (v1) {
      expect(cgroups?.mode).toBe('cgroup-v1');
      expect(cgroups?.memory).toBe(true);
    } else {
      console.warn(`[worker tests] cgroup mode here: ${cgroups?.mode ?? 'none (rss-watch)'}`);
    }
  });

  it('runs argv without a shell: $HOME and ; stay literal', async () => {
    const { result, logs, started } = await run({ command: ['/bin/echo', '$HOME', 'a;b', '`id`'] });
    expect(result.outcome).toBe('succeeded');
    expect(result.exitCode).toBe(0);
    expect(started).not.toBeNull();
    expect(logs.text('stdout')).toBe('$HOME a;b `id`\n');
  });

  it('runs through /bin/sh -c when shell is true', async () => {
    const { result, logs, a } = await run({ command: ['echo', '$TSCHED_RUN_ID;', 'echo', 'two'], shell: true });
    expect(result.outcome).toBe('succeeded');
    expect(logs.text('stdout')).toBe(`${a.runId}\ntwo\n`);
  });

  it('gives the task its env, tsched ids and ports, in a fresh directory removed afterwards', async () => {
    const { result, logs, a } = await run({
      command: ['/bin/sh', '-c', 'echo "$FOO|$TSCHED_TASK_ID|$TSCHED_RUN_ID|$TSCHED_ATTEMPT|$PORT|$PORTS|$PORT_HTTP|$PORT_ADMIN|$(pwd)"'],
      env: { FOO: 'bar baz', TSCHED_RUN_ID: 'spoofed' },
      attempt: 3,
      allocation: { cpus: 500, memory: 128 * 1024 * 1024, ports: [20001, 20002, 20003], namedPorts: { http: 20002, admin: 20003 } },
    });
    expect(result.outcome).toBe('succeeded');
    const runDir = join(workDir, 'runs', String(a.runId));
    expect(logs.text('stdout').trim()).toBe(`bar baz|${a.taskId}|${a.runId}|3|20001|20001,20002,20003|20002|20003|${runDir}`);
    expect(existsSync(runDir)).toBe(false);
    expect(existsSync(join(workDir, 'pids', String(a.runId)))).toBe(false);
  });

  it('keeps a failed run directory when asked, and reports the exit code', async () => {
    const { result, a } = await run({ command: ['/bin/sh', '-c', 'echo data > out.txt; exit 3'] }, executor({ keepFailedWorkDirs: true }));
    expect(result.outcome).toBe('failed');
    expect(result.exitCode).toBe(3);
    expect(result.reason).toBe('exit_code: 3');
    expect(readFileSync(join(workDir, 'runs', String(a.runId), 'out.txt'), 'utf8')).toBe('data\n');
  });

  it('fails clearly when the program does not exist', async () => {
    const { result, logs } = await run({ command: ['/nonexistent/prog'] }, executor({ cgroups: null }));
    expect(result.outcome).toBe('failed');
    expect(result.reason).toMatch(/^spawn_failed: ENOENT/);
    expect(logs.text('system')).toContain('could not start /nonexistent/prog');
  });

  it('writes an inline script into the run directory and runs it with /bin/sh', async () => {
    const { result, logs } = await run({ script: 'set -e\nx=41\necho "answer $((x+1))"\necho err >&2\n' });
    expect(result.outcome).toBe('succeeded');
    expect(logs.text('stdout')).toBe('answer 42\n');
    expect(logs.text('stderr')).toBe('err\n');
  });

  it('runs a scriptPath under the scripts root, through an inside symlink too', async () => {
    const r1 = await run({ scriptPath: 'sub/hello.sh', command: ['arg1'] });
    expect(r1.result.outcome).toBe('succeeded');
    expect(r1.logs.text('stdout')).toBe(`hello from ${join(await fsp.realpath(scriptsRoot), 'sub', 'hello.sh')} with arg1\n`);
    const r2 = await run({ scriptPath: 'inside-link.sh' });
    expect(r2.result.outcome).toBe('succeeded');
  });

  it.each([
    ['../outside.sh', /contains "\.\."/],
    ['sub/../../outside.sh', /contains "\.\."/],
    ['/etc/passwd', /is absolute/],
    ['leak.sh', /outside the scripts root/],
    ['sub/hello.sh\0.txt', /NUL byte/],
    ['missing.sh', /does not exist/],
    ['sub', /not a regular file/],
  ])('refuses scriptPath %j', async (scriptPath, why) => {
    const { result, logs, started } = await run({ scriptPath });
    expect(result.outcome).toBe('failed');
    expect(result.reason).toMatch(/^script_path_refused: /);
    expect(result.reason).toMatch(why);
    expect(started).toBeNull();
    expect(logs.text('stdout')).not.toContain('escaped');
  });

  it.each([
    ['with its cgroup', undefined],
    ['with the process group alone', null],
  ] as const)('kills a SIGTERM-ignoring, forking tree at the cap (%s): timed_out, nothing left', async (_how, cg) => {
    const ex = executor({ killGraceMs: 300, cgroups: cg });
    const a = assignment({
      capRemainingMs: 700,
      script:
        "trap '' TERM\necho leader $$\nwhile true; do (trap '' TERM; while true; do sleep 0.2 & sleep 0.1; done) & sleep 0.05; done\n",
    });
    const logs = new RecordingSink();
    const t0 = Date.now();
    const r = ex.start(a, { logs, onStarted: () => {} });
    const result = await r.done;
    const took = Date.now() - t0;
    expect(result.outcome).toBe('timed_out');
    expect(result.reason).toBe('execution_cap_exceeded');
    expect(took).toBeGreaterThanOrEqual(900); // cap + grace: SIGTERM was ignored
    const leader = Number(/leader (\d+)/.exec(logs.text('stdout'))?.[1]);
    expect(leader).toBeGreaterThan(1);
    await new Promise((res) => setTimeout(res, 100));
    expect(sessionMembers(leader)).toEqual([]);
    await ex.close();
  });

  it('cancels a run: SIGTERM, outcome cancelled', async () => {
    const ex = executor();
    const a = assignment({ command: ['/bin/sleep', '30'] });
    let started = false;
    const r = ex.start(a, { logs: new RecordingSink(), onStarted: () => (started = true) });
    await new Promise((res) => setTimeout(res, 200));
    expect(started).toBe(true);
    const t0 = Date.now();
    r.kill('cancelled');
    const result = await r.done;
    expect(result.outcome).toBe('cancelled');
    expect(Date.now() - t0).toBeLessThan(2000);
    await ex.close();
  });

  it('a cancel before the process exists means it never starts', async () => {
    const ex = executor();
    let started = false;
    const r = ex.start(assignment({ command: ['/bin/echo', 'no'] }), { logs: new RecordingSink(), onStarted: () => (started = true) });
    r.kill('cancelled');
    const result = await r.done;
    expect(result.outcome).toBe('cancelled');
    expect(started).toBe(false);
    await ex.close();
  });

  const hog = `const a=[]; for (let i=0;i<64;i++){ a.push(Buffer.alloc(8*1024*1024, 1)); } console.log('survived');`;
  const hogAlloc = { cpus: 1000, memory: 64 * 1024 * 1024, ports: [], namedPorts: {} };

  it('kills a memory hog at its limit (cgroup when available): resource_exceeded', async () => {
    const { result, logs } = await run({ command: [process.execPath, '-e', hog], allocation: hogAlloc });
    expect(result.outcome).toBe('failed');
    expect(result.reason).toBe('resource_exceeded: memory');
    expect(logs.text('stdout')).not.toContain('survived');
    if (cgroups?.memory) expect(result.usage.peakMemory).toBeGreaterThan(32 * 1024 * 1024);
  }, 30_000);

  it('kills a memory hog with the RSS watcher where there are no cgroups', async () => {
    const slowHog = `const a=[]; let i=0; const t=setInterval(()=>{ a.push(Buffer.alloc(8*1024*1024, 1)); if(++i===40){ console.log('survived'); clearInterval(t);} }, 30);`;
    const { result, logs } = await run({ command: [process.execPath, '-e', slowHog], allocation: hogAlloc }, executor({ cgroups: null }));
    expect(result.outcome).toBe('failed');
    expect(result.reason).toBe('resource_exceeded: memory');
    expect(logs.text('stdout')).not.toContain('survived');
    expect(result.usage.peakMemory).toBeGreaterThan(64 * 1024 * 1024);
  }, 30_000);

  it('holds a CPU hog to its share (0.5 cores) when the cpu controller is available', async () => {
    if (!cgroups?.cpu || !cgroups.cpuAccounting) {
      console.warn(
        `[worker tests] no cgroup cpu controller here (mode ${cgroups?.mode ?? 'none'}): CPU limits are not enforced; checking that usage is reported`,
      );
    }
    const { result } = await run({
      command: ['/bin/sh', '-c', 'while :; do :; done'],
      capRemainingMs: 2000,
      allocation: { cpus: 500, memory: 64 * 1024 * 1024, ports: [], namedPorts: {} },
    });
    expect(result.outcome).toBe('timed_out');
    if (cgroups?.cpu && cgroups.cpuAccounting) {
      // 0.5 cores for ~2 s is ~1 CPU-second; unthrottled it would be ~2.
      expect(result.usage.cpuSeconds).not.toBeNull();
      expect(result.usage.cpuSeconds as number).toBeGreaterThan(0.3);
      expect(result.usage.cpuSeconds as number).toBeLessThan(1.4);
    }
  }, 30_000);

  it('holds a run’s processes forked before its cpu cgroup join to its share too (0.5 cores)', async () => {
    if (!cgroups?.cpu || !cgroups.cpuAccounting) {
      console.warn(`[worker tests] no cgroup cpu controller here (mode ${cgroups?.mode ?? 'none'}): CPU limits are not enforced`);
      return;
    }
    // Three busy loops forked at once, before the v1 cpu join: unthrottled they would take ~4 CPU-seconds
    // of two cores in 2 s.
    const { result } = await run({
      command: ['/bin/sh', '-c', 'for i in 1 2 3; do (while :; do :; done) & done; wait'],
      capRemainingMs: 2000,
      allocation: { cpus: 500, memory: 64 * 1024 * 1024, ports: [], namedPorts: {} },
    });
    expect(result.outcome).toBe('timed_out');
    expect(result.usage.cpuSeconds).not.toBeNull();
    expect(result.usage.cpuSeconds as number).toBeGreaterThan(0.3);
    expect(result.usage.cpuSeconds as number).toBeLessThan(1.4);
  }, 30_000);

  it('captures stdout and stderr in order, with timestamps', async () => {
    const { logs } = await run({ command: ['/bin/sh', '-c', 'echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three'] });
    const seq = logs.entries.filter((e) => e.stream !== 'system').map((e) => `${e.stream}:${e.data.trim()}`);
    expect(seq).toEqual(['stdout:one', 'stderr:two', 'stdout:three']);
    const ats = logs.entries.map((e) => e.at);
    expect([...ats].sort((x, y) => x - y)).toEqual(ats);
  });

  it('caps a run’s log and says so', async () => {
    const ex = executor();
    const buf = new RunLogBuffer(1000, 1_000_000);
    const r = ex.start(
      assignment({ command: ['/bin/sh', '-c', 'i=0; while [ $i -lt 500 ]; do echo 0123456789abcdef; i=$((i+1)); done; echo done'] }),
      {
        logs: buf,
        onStarted: () => {},
      },
    );
    const result = await r.done;
    expect(result.outcome).toBe('succeeded');
    const chunks = buf.take();
    const out = chunks
      .filter((c) => c.stream === 'stdout')
      .map((c) => c.data)
      .join('');
    expect(Buffer.byteLength(out)).toBe(1000);
    expect(out.startsWith('0123456789abcdef\n')).toBe(true);
    const sys = chunks
      .filter((c) => c.stream === 'system')
      .map((c) => c.data)
      .join('');
    expect(sys).toContain('log cap of 1000 bytes reached');
    expect(sys.match(/log cap/g)?.length).toBe(1);
    await ex.close();
  });
});

describe('log buffer', () => {
  it('drops past its pending bound without blocking, with a marker', () => {
    let wakes = 0;
    const buf = new RunLogBuffer(10_000_000, 100, () => wakes++);
    buf.write('stdout', 'x'.repeat(60));
    buf.write('stdout', 'y'.repeat(60)); // does not fit: dropped
    buf.write('stderr', 'z'.repeat(30));
    expect(wakes).toBe(1);
    const chunks = buf.take();
    expect(chunks.map((c) => [c.stream, c.data.length])).toEqual([
      ['stdout', 60],
      ['stderr', 30],
      ['system', expect.any(Number)],
    ]);
    expect(chunks[2]?.data).toContain('60 bytes of output dropped');
    expect(buf.hasData).toBe(false);
    buf.write('stdout', 'again');
    expect(buf.take()).toEqual([{ stream: 'stdout', at: expect.any(Number), data: 'again' }]);
  });

  it('never splits a multi-byte character at the cap', () => {
    const buf = new RunLogBuffer(5, 1000);
    buf.write('stdout', 'ab€€'); // a b (1+1) + € (3) = 5, second € cut
    const out = buf.take();
    expect(out[0]?.data).toBe('ab€');
  });
});

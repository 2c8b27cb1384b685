// Per-run control groups: hard memory and CPU limits, peak-memory and CPU accounting, and a way to kill every
// process of a run even if it left its process group. Detects cgroup v2 (unified) or v1 (one mount per
// controller, possibly combined like "cpu,cpuacct"), creates the run cgroups under the worker's own cgroup
// (from /proc/self/cgroup) in `tsched/<worker>/r<runId>` (v2) or pooled `p<pid>-<n>` (v1), and checks
// writability once at start.
//
// A run's process writes its own pid into cgroup.procs before it execs the task (the spawner's child, or a
// tiny /bin/sh wrapper without it): the task is inside before its first instruction, so nothing it forks
// can escape. One exception, on v1 with cpuacct on its own mount: the cpu cgroup is joined one CFS period
// later (V1_CPU_JOIN_DELAY_MS), by moving every process the run's first cgroup holds.

import { closeSync, existsSync, promises as fsp, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { RunUsage } from '../domain/task.js';

export type CgroupMode = 'cgroup-v1' | 'cgroup-v2';

export interface RunLimits {
  /** bytes; 0 = none */
  memory: number;
  /** millicores; 0 = none */
  cpus: number;
}

export interface RunCgroup {
  /** cgroup.procs files the wrapper must join, in order. */
  readonly procsFiles: string[];
  pids(): Promise<number[]>;
  /** SIGKILL every process in the cgroup, until it is empty (or a few rounds passed). */
  killAll(): Promise<void>;
  usage(): Promise<RunUsage>;
  /** Whether the kernel's OOM killer fired in this cgroup. */
  oomKilled(): Promise<boolean>;
  /** Releases it: back to the pool when it can be reused, else removed. */
  remove(): Promise<void>;
}

export interface Cgroups {
  readonly mode: CgroupMode;
  readonly memory: boolean;
  readonly cpu: boolean;
  /** Whether CPU time can be read (cpuacct on v1, cpu.stat on v2). */
  readonly cpuAccounting: boolean;
  /** Whether a run joins its cpu cgroup one period after it starts rather than before exec (v1; see V1_CPU_JOIN_DELAY_MS). */
  readonly cpuJoinLate: boolean;
  create(runId: number, limits: RunLimits): Promise<RunCgroup>;
  /** Kills and removes run cgroups a previous life of this worker left behind; returns how many. */
  sweepLeftovers(): Promise<number>;
  /** Removes the pooled, idle run cgroups. */
  close?(): Promise<void>;
}

const CFS_PERIOD_US = 100_000;
/** Run cgroups are r<runId> (v2) or p<pid>-<n> (pooled, v1). */
const RUN_LEAF = /^(r\d+|p\d+-\d+)$/;
const POOL_MAX = 512;
/**
 * On cgroup v1 a run joins its cpu cgroup this long after it starts (one CFS period), and only if it still
 * runs: a write to the cpu hierarchy's cgroup.procs cost ~22 % of the spawner's throughput for /bin/true
 * here (memory 5 %, cpuacct 2 %). Until then a run may use every core (the quota is enforced per period
 * from then on); its CPU time is accounted from the first instruction (cpuacct is joined before exec).
 */
export const V1_CPU_JOIN_DELAY_MS = 100;
/** A released cgroup still charged with more than this (page cache) is removed rather than reused. */
const POOL_MAX_CHARGED = 1024 * 1024;

interface V1Run {
  /** Every hierarchy's dir of this cgroup (memory, cpu, cpuacct). */
  dirs: string[];
  /** The dirs a run's process joins before exec; the first tells whether anything of the run is left. */
  spawnDirs: string[];
  /** The cpu dir when its join is deferred (see V1_CPU_JOIN_DELAY_MS), else null. */
  lateCpuDir: string | null;
  memDir: string | null;
  cpuDir: string | null;
  /** What was last written (-1: unlimited), so that a reuse writes only what differs. */
  memLimit: number;
  cpuQuota: number;
  /** oom_kill count seen at the end of the previous run (it cannot be reset). */
  oomBase: number;
  /** Counter files kept open for the cgroup's pooled life (see CounterFile); null without their controller. */
  counters: V1Counters;
}

interface V1Counters {
  peak: CounterFile | null;
  usage: CounterFile | null;
  oomControl: CounterFile | null;
  failcnt: CounterFile | null;
  cpu: CounterFile | null;
}

/**
 * A cgroupfs counter file held open: a read is one pread at offset 0 (the kernel renders the value afresh
 * for a read from the start), a write one pwrite, where readFileSync or writeFileSync cost an open, a stat
 * and a close besides, and a path join in JS; a pooled cgroup serves thousands of runs. Not for
 * cgroup.procs: on v1 an open file caches its pid list (for a second) across reads.
 */
class CounterFile {
  private fd: number | null = null;
  private failed = false;
  private static readonly buf = Buffer.alloc(4096);
  constructor(private readonly path: string) {}

  private open(): number | null {
    if (this.fd === null && !this.failed) {
      try {
        this.fd = openSync(this.path, 'r+');
      } catch {
        try {
          this.fd = openSync(this.path, 'r');
        } catch {
          this.failed = true; // absent (memsw without swap accounting, say): reads null, writes no-op
        }
      }
    }
    return this.fd;
  }

  read(): string | null {
    const fd = this.open();
    if (fd === null) return null;
    try {
      const n = readSync(fd, CounterFile.buf, 0, CounterFile.buf.length, 0);
      return CounterFile.buf.toString('latin1', 0, n);
    } catch {
      return null;
    }
  }

  readNum(): number | null {
    const text = this.read();
    if (text === null) return null;
    const n = Number(text.trim());
    return Number.isFinite(n) ? n : null;
  }

  /** Writes a value; false when the file is absent or refused it. */
  write(value: string): boolean {
    const fd = this.open();
    if (fd === null) return false;
    try {
      writeSync(fd, value, 0);
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

// cgroupfs files live in the kernel: synchronous reads and writes take microseconds, far less than a round
// trip through libuv's thread pool.
function readPidsSync(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter((x) => x !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * Moves every process of a run (listed in `from`, which it joined before exec) into `to` as well. True when
 * they were all there already and there was at least one: from then on, what they fork is born inside. A
 * process forked while its parent was being moved is caught by the next round.
 */
function joinLate(from: string, to: string): boolean {
  const procs = join(to, 'cgroup.procs');
  for (let round = 0; round < 8; round++) {
    const pids = readPidsSync(from);
    if (pids.length === 0) return false;
    const inside = new Set(readPidsSync(to));
    const missing = pids.filter((p) => !inside.has(p));
    if (missing.length === 0) return true;
    for (const pid of missing) {
      try {
        writeFileSync(procs, String(pid));
      } catch {
        /* ESRCH: it exited meanwhile */
      }
    }
  }
  return false;
}

/** oom_kill of memory.oom_control (kernels without that counter: memory.failcnt, hitting the limit at all). */
function oomCountOf(control: string | null, failcnt: () => number | null): number {
  if (control !== null) {
    for (const line of control.split('\n')) {
      const [k, v] = line.split(' ');
      if (k === 'oom_kill') return Number(v);
    }
  }
  return failcnt() ?? 0;
}

function trySync(f: () => void): void {
  try {
    f();
  } catch {
    /* optional file (memsw without swap accounting) */
  }
}

function mkdirIfMissing(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

function sanitize(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100) || 'worker';
}

async function readNum(file: string): Promise<number | null> {
  try {
    const n = Number((await fsp.readFile(file, 'utf8')).trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

async function readKeyed(file: string, key: string): Promise<number | null> {
  try {
    const text = await fsp.readFile(file, 'utf8');
    for (const line of text.split('\n')) {
      const [k, v] = line.split(/\s+/);
      if (k === key) return Number(v);
    }
  } catch {
    /* absent */
  }
  return null;
}

async function readPids(dir: string): Promise<number[]> {
  try {
    const text = await fsp.readFile(join(dir, 'cgroup.procs'), 'utf8');
    return text
      .split('\n')
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function killDirs(dirs: string[], useCgroupKill: boolean): Promise<void> {
  for (let round = 0; round < 50; round++) {
    let any = false;
    for (const d of dirs) {
      if (useCgroupKill) await fsp.writeFile(join(d, 'cgroup.kill'), '1').catch(() => {});
      for (const pid of await readPids(d)) {
        any = true;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    if (!any) return;
    await sleep(round < 5 ? 5 : 20);
  }
}

async function removeDirs(dirs: string[]): Promise<void> {
  for (const d of dirs) {
    for (let i = 0; i < 20; i++) {
      try {
        await fsp.rmdir(d);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        // EBUSY: killed processes not reaped yet.
        await sleep(10 * (i + 1));
      }
    }
  }
}

interface V1Mount {
  controllers: string[];
  dir: string; // the worker's base dir in this hierarchy: <mount>/<own path>/tsched/<name>
}

/** Parses /proc/self/mountinfo for cgroup v1 mounts: controller list → mountpoint and mount root. */
function v1Mounts(): Array<{ controllers: string[]; mountpoint: string; root: string }> {
  const out: Array<{ controllers: string[]; mountpoint: string; root: string }> = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    if (right[0] !== 'cgroup') continue;
    const opts = (right[2] ?? '').split(',');
    const controllers = opts.filter((o) => ['memory', 'cpu', 'cpuacct'].includes(o));
    if (controllers.length === 0) continue;
    out.push({ controllers, mountpoint: left[4] as string, root: left[3] as string });
  }
  return out;
}

function ownCgroupPaths(): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, ctrls, path] = line.split(':');
    if (ctrls === undefined || path === undefined) continue;
    if (ctrls === '') m.set('', path);
    for (const c of ctrls.split(',')) m.set(c, path);
  }
  return m;
}

function relative(path: string, root: string): string {
  if (root !== '/' && (path === root || path.startsWith(`${root}/`))) return path.slice(root.length) || '/';
  return path;
}

async function probeDir(dir: string): Promise<boolean> {
  try {
    await fsp.mkdir(dir, { recursive: true });
    const probe = join(dir, `probe-${process.pid}`);
    await fsp.mkdir(probe);
    await fsp.rmdir(probe);
    return true;
  } catch {
    return false;
  }
}

async function detectV1(workerName: string): Promise<Cgroups | null> {
  const own = ownCgroupPaths();
  const mounts = v1Mounts();
  const pick = async (ctrl: string): Promise<V1Mount | null> => {
    const m = mounts.find((x) => x.controllers.includes(ctrl));
    const path = own.get(ctrl);
    if (!m || path === undefined) return null;
    const dir = join(m.mountpoint, relative(path, m.root), 'tsched', sanitize(workerName));
    return (await probeDir(dir)) ? { controllers: m.controllers, dir } : null;
  };
  const mem = await pick('memory');
  const cpu = await pick('cpu');
  let acct = await pick('cpuacct');
  if (acct && cpu && acct.dir === cpu.dir) acct = null; // combined "cpu,cpuacct" mount: one dir serves both
  const cpuHasAcct = cpu?.controllers.includes('cpuacct') ?? false;
  if (!mem && !cpu) return null;
  const hierarchies = [mem, cpu, acct].filter((x): x is V1Mount => x !== null);
  // The cpu join is deferred only when another hierarchy holds the run from its first instruction (for the
  // kills and the emptiness checks) and CPU time is accounted apart from it (cpuacct on its own mount).
  const deferCpu = cpu !== null && acct !== null;

  // Run cgroups are pooled: making and removing three cgroups per run (one per v1 hierarchy) cost more than
  // the run itself for short tasks. A released cgroup that is empty and holds almost no charged memory goes
  // back to the pool; the next run resets its peak and CPU counters and rewrites only the limits that differ.
  const pool: V1Run[] = [];
  let seq = 0;
  const procsOf = (dirs: string[]) => dirs.map((d) => join(d, 'cgroup.procs'));
  const fresh = (): V1Run => {
    const leaf = `p${process.pid}-${seq++}`;
    const dirs = hierarchies.map((h) => join(h.dir, leaf));
    for (const d of dirs) mkdirIfMissing(d);
    const memDir = mem ? join(mem.dir, leaf) : null;
    const cpuDir = cpu ? join(cpu.dir, leaf) : null;
    const acctDir = acct ? join(acct.dir, leaf) : cpuHasAcct ? cpuDir : null;
    const file = (dir: string | null, name: string) => (dir ? new CounterFile(join(dir, name)) : null);
    const counters: V1Counters = {
      peak: file(memDir, 'memory.max_usage_in_bytes'),
      usage: file(memDir, 'memory.usage_in_bytes'),
      oomControl: file(memDir, 'memory.oom_control'),
      failcnt: file(memDir, 'memory.failcnt'),
      cpu: file(acctDir, 'cpuacct.usage'),
    };
    const lateCpuDir = deferCpu ? cpuDir : null;
    const spawnDirs = dirs.filter((d) => d !== lateCpuDir);
    const c: V1Run = { dirs, spawnDirs, lateCpuDir, memDir, cpuDir, memLimit: -1, cpuQuota: -1, oomBase: 0, counters };
    c.oomBase = runOom(c);
    return c;
  };
  const runOom = (c: V1Run): number =>
    c.memDir ? oomCountOf(c.counters.oomControl?.read() ?? null, () => c.counters.failcnt?.readNum() ?? null) : 0;
  const setLimits = (c: V1Run, limits: RunLimits) => {
    if (c.memDir) {
      const want = limits.memory > 0 ? limits.memory : -1;
      if (want !== c.memLimit) {
        const lim = join(c.memDir, 'memory.limit_in_bytes');
        const memsw = join(c.memDir, 'memory.memsw.limit_in_bytes');
        // memsw must stay >= limit: raise memsw first when growing, lower the limit first when shrinking.
        const growing = want === -1 || (c.memLimit !== -1 && want > c.memLimit);
        if (growing) trySync(() => writeFileSync(memsw, String(want)));
        writeFileSync(lim, String(want));
        if (!growing) trySync(() => writeFileSync(memsw, String(want)));
        c.memLimit = want;
      }
    }
    if (c.cpuDir) {
      const want = limits.cpus > 0 ? Math.max(1000, Math.round((limits.cpus / 1000) * CFS_PERIOD_US)) : -1;
      if (want !== c.cpuQuota) {
        writeFileSync(join(c.cpuDir, 'cpu.cfs_quota_us'), String(want));
        c.cpuQuota = want;
      }
    }
  };
  const destroy = (c: V1Run) => {
    for (const f of Object.values(c.counters)) f?.close();
    return removeDirs(c.dirs);
  };

  return {
    mode: 'cgroup-v1',
    memory: mem !== null,
    cpu: cpu !== null,
    cpuAccounting: acct !== null || cpuHasAcct,
    cpuJoinLate: deferCpu,
    async create(_runId, limits) {
      let c = pool.pop();
      if (c) {
        // Counters of the previous run: peak back to the current usage, CPU time to zero.
        c.counters.peak?.write('0');
        c.counters.cpu?.write('0');
      } else c = fresh();
      try {
        setLimits(c, limits);
      } catch (e) {
        await destroy(c);
        throw e;
      }
      const run = c;
      const { dirs, spawnDirs, lateCpuDir, memDir } = run;
      const anchor = spawnDirs[0] as string;
      let released = false;
      // Set when killAll found the cgroup empty: once it is, nothing can enter it again but our next spawn.
      let emptied = false;
      let cpuTimer: NodeJS.Timeout | null = null;
      const stopCpuJoin = () => {
        if (cpuTimer) clearTimeout(cpuTimer);
        cpuTimer = null;
      };
      if (lateCpuDir) {
        // Tried again each period until every process of the run is in (the run may not have started yet,
        // or forked while being moved); its later children are born inside.
        const tryJoin = () => {
          cpuTimer = null;
          if (released || emptied) return;
          if (!joinLate(anchor, lateCpuDir)) cpuTimer = setTimeout(tryJoin, V1_CPU_JOIN_DELAY_MS).unref();
        };
        cpuTimer = setTimeout(tryJoin, V1_CPU_JOIN_DELAY_MS).unref();
      }
      return {
        procsFiles: procsOf(spawnDirs),
        pids: async () => [...new Set(dirs.flatMap(readPidsSync))],
        // Every process of the run joined the spawn hierarchies, so the first tells whether anything is left.
        killAll: async () => {
          if (readPidsSync(anchor).length === 0) {
            emptied = true;
            stopCpuJoin();
            return;
          }
          await killDirs(dirs, false);
          emptied = readPidsSync(anchor).length === 0;
          if (emptied) stopCpuJoin();
        },
        async usage() {
          const peak = run.counters.peak?.readNum() ?? null;
          const cpuNs = run.counters.cpu?.readNum() ?? null;
          return { peakMemory: peak, cpuSeconds: cpuNs === null ? null : cpuNs / 1e9 };
        },
        async oomKilled() {
          if (!memDir) return false;
          const n = runOom(run);
          const fired = n > run.oomBase;
          run.oomBase = n;
          return fired;
        },
        async remove() {
          if (released) return;
          released = true;
          stopCpuJoin();
          const empty = emptied || readPidsSync(anchor).length === 0;
          // Memory still charged (page cache the run left) would count against the next run: start afresh.
          const charged = run.counters.usage?.readNum() ?? 0;
          if (empty && charged <= POOL_MAX_CHARGED && pool.length < POOL_MAX) pool.push(run);
          else await destroy(run);
        },
      };
    },
    async sweepLeftovers() {
      let n = 0;
      const seen = new Set<string>();
      for (const h of hierarchies) {
        const entries = await fsp.readdir(h.dir).catch(() => [] as string[]);
        const runDirs = entries.filter((e) => RUN_LEAF.test(e)).map((e) => join(h.dir, e));
        await killDirs(runDirs, false);
        await removeDirs(runDirs);
        for (const d of entries) if (RUN_LEAF.test(d)) seen.add(d);
      }
      n = seen.size;
      return n;
    },
    async close() {
      await Promise.all(pool.splice(0).map(destroy));
    },
  };
}

async function detectV2(workerName: string): Promise<Cgroups | null> {
  const own = ownCgroupPaths().get('') ?? '/';
  const root = '/sys/fs/cgroup';
  let base = join(root, own);
  const enable = async (dir: string) => {
    const avail = (await fsp.readFile(join(dir, 'cgroup.controllers'), 'utf8')).split(/\s+/);
    const want = ['memory', 'cpu'].filter((c) => avail.includes(c));
    if (want.length > 0) await fsp.writeFile(join(dir, 'cgroup.subtree_control'), want.map((c) => `+${c}`).join(' '));
    return want;
  };
  try {
    // "No internal processes": our own cgroup can only delegate if we leave it, so move into a leaf first.
    try {
      await enable(base);
    } catch {
      const leaf = join(base, 'tsched-agent');
      await fsp.mkdir(leaf, { recursive: true });
      await fsp.writeFile(join(leaf, 'cgroup.procs'), String(process.pid));
      await enable(base);
    }
    base = join(base, 'tsched');
    await fsp.mkdir(base, { recursive: true });
    await enable(base);
    base = join(base, sanitize(workerName));
    await fsp.mkdir(base, { recursive: true });
    const got = await enable(base);
    if (!(await probeDir(base))) return null;
    const hasMem = got.includes('memory');
    const hasCpu = got.includes('cpu');
    if (!hasMem && !hasCpu) return null;
    const dirBase = base;
    return {
      mode: 'cgroup-v2',
      memory: hasMem,
      cpu: hasCpu,
      cpuAccounting: true,
      cpuJoinLate: false,
      async create(runId, limits) {
        const dir = join(dirBase, `r${runId}`);
        await fsp.mkdir(dir).catch((e: NodeJS.ErrnoException) => (e.code === 'EEXIST' ? undefined : Promise.reject(e)));
        try {
          if (hasMem && limits.memory > 0) {
            await fsp.writeFile(join(dir, 'memory.max'), String(limits.memory));
            await fsp.writeFile(join(dir, 'memory.swap.max'), '0').catch(() => {});
          }
          if (hasCpu && limits.cpus > 0) {
            const quota = Math.max(1000, Math.round((limits.cpus / 1000) * CFS_PERIOD_US));
            await fsp.writeFile(join(dir, 'cpu.max'), `${quota} ${CFS_PERIOD_US}`);
          }
        } catch (e) {
          await removeDirs([dir]);
          throw e;
        }
        const hasKill = existsSync(join(dir, 'cgroup.kill'));
        return {
          procsFiles: [join(dir, 'cgroup.procs')],
          pids: () => readPids(dir),
          killAll: () => killDirs([dir], hasKill),
          async usage() {
            const [peak, usec] = await Promise.all([readNum(join(dir, 'memory.peak')), readKeyed(join(dir, 'cpu.stat'), 'usage_usec')]);
            return { peakMemory: peak, cpuSeconds: usec === null ? null : usec / 1e6 };
          },
          async oomKilled() {
            return ((await readKeyed(join(dir, 'memory.events'), 'oom_kill')) ?? 0) > 0;
          },
          remove: () => removeDirs([dir]),
        };
      },
      async sweepLeftovers() {
        const entries = (await fsp.readdir(dirBase).catch(() => [] as string[]))
          .filter((e) => RUN_LEAF.test(e))
          .map((e) => join(dirBase, e));
        await killDirs(entries, true);
        await removeDirs(entries);
        return entries.length;
      },
    };
  } catch {
    return null;
  }
}

/** Finds usable cgroups, or null when none can be created here (then the RSS watcher enforces memory). */
export async function detectCgroups(workerName: string): Promise<Cgroups | null> {
  if (process.platform !== 'linux') return null;
  try {
    if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return await detectV2(workerName);
    return await detectV1(workerName);
  } catch {
    return null;
  }
}

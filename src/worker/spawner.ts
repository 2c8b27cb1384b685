// The spawner: one small long-lived helper per shell executor that forks and execs runs on the worker's
// behalf. Why: Node's spawn forks the whole worker process (copying its page tables) and blocks the event
// loop until the child has exec'd, and joining a cgroup took an extra /bin/sh exec. The helper is small, its
// child joins the run's cgroups itself and execs the task directly, and the worker only writes a request
// into a pipe. Output, exec failures and exits come back as framed events.
// Two builds speak the same protocol: the native one (spawner.c, built by `npm run build` when a C compiler
// is present), and the Perl script (spawner-script.ts), which costs about twice the CPU per run. When
// neither can start, start() returns null and the executor uses Node's spawn.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { constants } from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { SPAWNER_SCRIPT } from './spawner-script.js';

export interface SpawnRequest {
  runId: number;
  cwd: string;
  /** cgroup.procs files the child writes its pid into before exec. */
  procsFiles: string[];
  argv: string[];
  env: Record<string, string>;
}

export interface SpawnEvents {
  /** The task was exec'd: pid is also its process group and session. */
  onPid(pid: number): void;
  /** It could not start: errno name (ENOENT, EACCES, ECGROUP…) and message. */
  onFail(code: string, message: string): void;
  onData(stream: 'stdout' | 'stderr', data: string): void;
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
  /** Its pipes are closed: nothing more comes for this run. */
  onDone(): void;
}

interface Pending {
  ev: SpawnEvents;
  out: StringDecoder;
  err: StringDecoder;
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n as number, name as NodeJS.Signals]),
);

/** Which helper runs: the native build, the Perl script, or (null from start) neither. */
export type SpawnerKind = 'native' | 'perl';

/** Where `npm run build` puts the native helper; the same path from src/worker and dist/worker. */
export const NATIVE_SPAWNER = fileURLToPath(new URL('../../dist/native/tsched-spawner', import.meta.url));

/** How long the native helper has to answer its first request before the Perl one is used instead. */
const PROBE_TIMEOUT_MS = 5000;

function nativeAvailable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let perlOk: Promise<boolean> | null = null;
/** Whether perl with POSIX and Errno runs here; asked once per process, without blocking the event loop. */
function perlAvailable(): Promise<boolean> {
  perlOk ??= new Promise((resolve) => {
    execFile('perl', ['-MPOSIX', '-MErrno', '-e', 'print "ok"'], { timeout: 10_000 }, (err, stdout) => resolve(!err && stdout === 'ok'));
  });
  return perlOk;
}

export class Spawner {
  private readonly runs = new Map<number, Pending>();
  private buf: Buffer = Buffer.alloc(0);
  private queued: string[] = [];
  private writeScheduled = false;
  private dead = false;
  private closing = false;
  private rmSeq = 0;
  private readonly removals = new Map<number, (errno: string | null) => void>();

  private constructor(
    private readonly proc: ChildProcess,
    readonly kind: SpawnerKind,
    private readonly onWarning?: (msg: string, err?: unknown) => void,
  ) {
    proc.stdout?.on('data', (d: Buffer) => this.parse(d));
    proc.stdin?.on('error', () => {}); // reported through 'exit'
    proc.once('exit', (code, signal) => this.died(`spawner helper exited (${code ?? signal})`));
    proc.once('error', (e) => this.died(`spawner helper failed: ${e.message}`));
  }

  /**
   * The helper: the native build when it was built, else the Perl script; null when neither can run here
   * (then use Node's spawn). `only` asks for one of them (tests; TSCHED_SPAWNER=native|perl does the same).
   */
  static async start(
    onWarning?: (msg: string, err?: unknown) => void,
    only?: SpawnerKind,
    nativePath = NATIVE_SPAWNER,
  ): Promise<Spawner | null> {
    if (process.platform !== 'linux' || process.env.TSCHED_NO_SPAWNER === '1') return null;
    const env = process.env.TSCHED_SPAWNER;
    if (env !== undefined && env !== '' && env !== 'native' && env !== 'perl')
      onWarning?.(`TSCHED_SPAWNER: expected native or perl, got "${env}"; using the default (native when built, else perl)`);
    const want = only ?? (env === 'native' || env === 'perl' ? env : undefined);
    if (want !== 'perl' && nativeAvailable(nativePath)) {
      const proc = spawn(nativePath, [], { stdio: ['pipe', 'pipe', 'inherit'] });
      const sp = new Spawner(proc, 'native', onWarning);
      // One answered request proves it runs here (a binary built against another C library would not
      // even load): an rmdir of a path that cannot exist. Otherwise the Perl helper takes over.
      sp.closing = true; // a helper that fails the probe is not a lost helper: no warning from died()
      let timer: NodeJS.Timeout | undefined;
      const answer = await Promise.race([
        sp.rmdir(`/nonexistent-tsched-probe-${process.pid}/run`),
        new Promise<string>((r) => {
          timer = setTimeout(() => r('ETIMEDOUT'), PROBE_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
      if (answer !== 'EHELPER' && answer !== 'ETIMEDOUT') {
        sp.closing = false;
        return sp;
      }
      onWarning?.(`the native spawner helper (${nativePath}) does not run here (${answer}); using the Perl helper`);
      proc.kill('SIGKILL');
      if (want === 'native') return null;
    }
    if (want === 'native' || !(await perlAvailable())) return null;
    const proc = spawn('perl', ['-e', SPAWNER_SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
    return new Spawner(proc, 'perl', onWarning);
  }

  /** The helper's pid. */
  get pid(): number | undefined {
    return this.proc.pid;
  }

  get alive(): boolean {
    return !this.dead;
  }

  spawn(req: SpawnRequest, ev: SpawnEvents): void {
    const fields = [String(req.runId), req.cwd, String(req.procsFiles.length), ...req.procsFiles, String(req.argv.length), ...req.argv];
    const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`);
    fields.push(String(env.length), ...env);
    const bad = fields.find((f) => f.includes('\0'));
    if (this.dead || bad !== undefined) {
      const why = this.dead ? 'the spawner helper is gone' : 'an argument or variable contains a NUL byte';
      queueMicrotask(() => {
        ev.onFail(this.dead ? 'EHELPER' : 'EINVAL', why);
        ev.onExit(null, null);
        ev.onDone();
      });
      return;
    }
    this.runs.set(req.runId, { ev, out: new StringDecoder('utf8'), err: new StringDecoder('utf8') });
    this.send('S', fields.join('\0'));
  }

  /** rmdir of an empty run directory, done by the helper: resolves null when removed, else the errno name. */
  rmdir(dir: string): Promise<string | null> {
    if (this.dead || dir.includes('\0')) return Promise.resolve('EHELPER');
    const seq = ++this.rmSeq;
    return new Promise((resolve) => {
      this.removals.set(seq, resolve);
      this.send('R', `${seq}\0${dir}`);
    });
  }

  private send(kind: 'S' | 'R', payload: string): void {
    this.queued.push(`${kind} ${Buffer.byteLength(payload)}\n${payload}`);
    if (!this.writeScheduled) {
      // Runs accepted in the same turn go out in one write.
      this.writeScheduled = true;
      setImmediate(() => {
        this.writeScheduled = false;
        const chunk = this.queued.join('');
        this.queued = [];
        if (!this.dead) this.proc.stdin?.write(chunk);
      });
    }
  }

  private parse(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    let off = 0;
    for (;;) {
      const nl = this.buf.indexOf(10, off);
      if (nl < 0) break;
      const head = this.buf.toString('latin1', off, nl);
      const [type, idS, lenS] = head.split(' ');
      const len = Number(lenS);
      if (nl + 1 + len > this.buf.length) break;
      const data = this.buf.subarray(nl + 1, nl + 1 + len);
      off = nl + 1 + len;
      this.event(type as string, Number(idS), data);
    }
    this.buf = off >= this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
  }

  private event(type: string, runId: number, data: Buffer): void {
    if (type === 'R') {
      const done = this.removals.get(runId);
      this.removals.delete(runId);
      done?.(data.length === 0 ? null : data.toString('latin1'));
      return;
    }
    const p = this.runs.get(runId);
    if (!p) return;
    switch (type) {
      case 'O': {
        const s = p.out.write(data);
        if (s) p.ev.onData('stdout', s);
        break;
      }
      case 'E': {
        const s = p.err.write(data);
        if (s) p.ev.onData('stderr', s);
        break;
      }
      case 'P':
        p.ev.onPid(Number(data.toString('latin1')));
        break;
      case 'F': {
        const text = data.toString('utf8');
        const sp = text.indexOf(' ');
        p.ev.onFail(sp < 0 ? text : text.slice(0, sp), sp < 0 ? '' : text.slice(sp + 1));
        break;
      }
      case 'X': {
        const [code, sig] = data.toString('latin1').split(' ');
        p.ev.onExit(code ? Number(code) : null, sig ? (SIGNAL_NAMES.get(Number(sig)) ?? null) : null);
        break;
      }
      case 'D': {
        const o = p.out.end();
        if (o) p.ev.onData('stdout', o);
        const e = p.err.end();
        if (e) p.ev.onData('stderr', e);
        this.runs.delete(runId);
        p.ev.onDone();
        break;
      }
      default:
        this.onWarning?.(`spawner: unknown event ${type}`);
    }
  }

  private died(msg: string): void {
    if (this.dead) return;
    this.dead = true;
    if (!this.closing || this.runs.size > 0)
      this.onWarning?.(`${msg}; ${this.runs.size} run(s) lose their exit status; further runs use Node's spawn`);
    for (const p of this.runs.values()) {
      // Their processes may live on (reparented): the executor's group and cgroup kills still reach them.
      p.ev.onExit(null, 'SIGKILL');
      p.ev.onDone();
    }
    this.runs.clear();
    for (const done of this.removals.values()) done('EHELPER');
    this.removals.clear();
  }

  /** Ends the helper once the runs it holds are done (closing stdin lets it finish). */
  close(): Promise<void> {
    if (this.dead) return Promise.resolve();
    this.closing = true;
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.stdin?.end();
    });
  }
}

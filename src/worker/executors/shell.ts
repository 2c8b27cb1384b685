// The shell executor: runs a task's argv (no shell unless asked), inline script or scriptPath as a child
// process in its own session and process group, in a fresh directory, under a per-run cgroup when the
// machine has one (else an RSS watcher), with the execution cap counted down locally.

import { spawn } from 'node:child_process';
import { promises as fsp, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { RunUsage } from '../../domain/task.js';
import type { WireAssignment } from '../../protocol/worker-api.js';
import type { Cgroups, RunCgroup } from '../cgroups.js';
import type { PidRecords } from '../pids.js';
import type { RssWatch, RssWatcher } from '../rss-watch.js';
import { resolveScriptPath, ScriptPathRefused } from '../script-path.js';
import { Spawner } from '../spawner.js';
import { type ExecContext, type ExecResult, type Executor, KILL_OUTCOMES, type KillReason, type RunningRun } from './types.js';

export interface ShellExecutorOptions {
  /** Runs get workDir/runs/<runId>, or runsDir/<runId>. */
  workDir: string;
  /** Where run directories go (default workDir/runs). A tmpfs here makes short runs much cheaper. */
  runsDir?: string;
  scriptsRoot?: string;
  keepFailedWorkDirs?: boolean;
  /** Between SIGTERM and SIGKILL. Default 10 s. */
  killGraceMs?: number;
  cgroups: Cgroups | null;
  /** Used for memory when cgroups cannot limit memory. */
  rssWatcher: RssWatcher | null;
  pids: PidRecords;
  /** Variables every run inherits before its own env; default: PATH, HOME, LANG, TZ… of the worker. */
  baseEnv?: Record<string, string>;
  onWarning?: (msg: string, err?: unknown) => void;
}

// Joins the run's cgroups, then becomes the task: the task is inside before it runs a single instruction.
const CGROUP_WRAPPER = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';

const INHERITED = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'USER', 'LOGNAME', 'TMPDIR'];

export function defaultBaseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of INHERITED) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
  return env;
}

/** The environment a run sees: worker basics, then the task's env, then tsched's own variables (not overridable). */
export function runEnv(a: WireAssignment, base: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...base, ...a.env };
  env.TSCHED_TASK_ID = String(a.taskId);
  env.TSCHED_RUN_ID = String(a.runId);
  env.TSCHED_ATTEMPT = String(a.attempt);
  const ports = a.allocation.ports;
  if (ports.length > 0) {
    env.PORT = String(ports[0]);
    env.PORTS = ports.join(',');
  }
  for (const [name, port] of Object.entries(a.allocation.namedPorts ?? {})) env[`PORT_${name.toUpperCase()}`] = String(port);
  return env;
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    /* the group is gone */
  }
}

interface Launched {
  /** The pid once the task runs; null when it could not start. */
  started: Promise<number | null>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Its output pipes are closed. */
  closed: Promise<void>;
  spawnError(): { code: string; message: string } | null;
  /** Stop reading its output (a process that escaped holds the pipe). */
  dropPipes(): void;
}

const NO_USAGE: RunUsage = { peakMemory: null, cpuSeconds: null };

export class ShellExecutor implements Executor {
  readonly name = 'shell' as const;
  private readonly baseEnv: Record<string, string>;
  private readonly grace: number;
  private readonly cleanups = new Set<Promise<void>>();
  /** undefined: not started yet; null: no perl here (Node's spawn is used). */
  private spawner: Spawner | null | undefined;
  private parentReady: Promise<void> | undefined;
  private spawnerReady: Promise<Spawner | null> | undefined;

  constructor(private readonly opts: ShellExecutorOptions) {
    this.baseEnv = opts.baseEnv ?? defaultBaseEnv();
    this.grace = opts.killGraceMs ?? 10_000;
    // Probe perl and start the helper now, so that the first run does not wait for it.
    void this.liveSpawner();
  }

  start(a: WireAssignment, ctx: ExecContext): RunningRun {
    const o = this.opts;
    /** The run's pid (its process group and session), once it runs. */
    let child: number | null = null;
    let cg: RunCgroup | null = null;
    let killReason: KillReason | null = null;
    let escalate: NodeJS.Timeout | null = null;

    const hardKill = () => {
      if (child) killGroup(child, 'SIGKILL');
      if (cg) void cg.killAll();
    };
    const kill = (reason: KillReason) => {
      if (killReason) {
        // A later, harsher request (orphaned/shutdown after a cancel) cuts the grace short.
        if (reason === 'orphaned') hardKill();
        return;
      }
      killReason = reason;
      if (!child) return; // not started yet: the setup sees killReason and never spawns (or kills on start)
      if (reason === 'orphaned') {
        hardKill();
        return;
      }
      killGroup(child, 'SIGTERM');
      escalate = setTimeout(hardKill, this.grace);
    };

    const runDir = join(o.runsDir ?? join(o.workDir, 'runs'), String(a.runId));
    const done = (async (): Promise<ExecResult> => {
      let capTimer: NodeJS.Timeout | null = null;
      let rss: RssWatch | null = null;
      let memExceeded = false;
      let startedAt: number | null = null;
      let failed = true;
      let pidWrite: Promise<void> | null = null;
      const finish = (r: Omit<ExecResult, 'finishedAt' | 'startedAt' | 'usage'> & { usage?: RunUsage }): ExecResult => ({
        usage: NO_USAGE,
        ...r,
        startedAt,
        finishedAt: Date.now(),
      });
      const killedResult = (): ExecResult | null => (killReason ? finish({ ...KILL_OUTCOMES[killReason], exitCode: null }) : null);
      try {
        if (a.capRemainingMs <= 0) {
          killReason = 'timed_out';
          return killedResult() as ExecResult;
        }
        capTimer = setTimeout(() => kill('timed_out'), a.capRemainingMs);
        const sp = await this.liveSpawner();
        // With the spawner, its child makes the run directory (only the parent must exist); an inline script
        // needs the directory before.
        if (!sp || a.script !== null) await fsp.mkdir(runDir, { recursive: true });
        else await this.runsParent(runDir);

        let argv: string[];
        if (a.scriptPath !== null) {
          try {
            argv = ['/bin/sh', await resolveScriptPath(o.scriptsRoot, a.scriptPath), ...a.command];
          } catch (e) {
            if (!(e instanceof ScriptPathRefused)) throw e;
            ctx.logs.write('system', `[tsched] script_path_refused: ${e.message}\n`);
            return finish({ outcome: 'failed', exitCode: null, reason: `script_path_refused: ${e.message}` });
          }
        } else if (a.script !== null) {
          const file = join(runDir, '.tsched-script');
          await fsp.writeFile(file, a.script, { mode: 0o700 });
          argv = ['/bin/sh', file];
        } else if (a.shell) {
          argv = ['/bin/sh', '-c', a.command.join(' ')];
        } else {
          argv = a.command;
        }
        if (argv.length === 0)
          return finish({ outcome: 'failed', exitCode: null, reason: 'nothing_to_run: the task has no command, script or scriptPath' });

        if (o.cgroups) {
          try {
            cg = await o.cgroups.create(a.runId, { memory: a.allocation.memory, cpus: a.allocation.cpus });
          } catch (e) {
            o.onWarning?.(`run ${a.runId}: could not create its cgroup; running without cgroup limits`, e);
          }
        }
        if (killReason) return killedResult() as ExecResult;

        const env = runEnv(a, this.baseEnv);
        const proc = this.launch(a.runId, argv, runDir, env, cg, ctx, !sp || a.script !== null);
        const pid = (await proc.started) ?? undefined;
        if (pid !== undefined) {
          child = pid;
          startedAt = Date.now();
          ctx.onStarted(startedAt);
          // With a cgroup, the cgroup itself records the run's processes (a restarted worker sweeps it).
          if (!cg)
            pidWrite = o.pids
              .write({ runId: a.runId, pid, startedAt })
              .catch((e) => o.onWarning?.(`run ${a.runId}: could not write its pid record`, e));
          if ((!cg || !o.cgroups?.memory) && o.rssWatcher && a.allocation.memory > 0) {
            rss = o.rssWatcher.watch(pid, a.allocation.memory, () => {
              memExceeded = true;
              killGroup(pid, 'SIGKILL');
            });
          }
          // A kill that arrived while we were setting up.
          if (killReason) {
            const r = killReason;
            killReason = null;
            kill(r);
          }
        }

        const { code, signal } = await proc.exited;
        const spawnError = proc.spawnError();
        // Whatever the leader left behind in its group or cgroup dies with it. The cgroup holds the whole
        // group (and what left it); killing a group that is gone costs a thrown ESRCH per run.
        if (cg) await cg.killAll();
        else if (pid !== undefined) killGroup(pid, 'SIGKILL');
        // Drain the pipes, but never wait on a process that escaped with our pipe open.
        await Promise.race([proc.closed, new Promise((r) => setTimeout(r, 1000).unref())]);
        proc.dropPipes();

        let usage: RunUsage = NO_USAGE;
        let oom = memExceeded;
        if (cg) {
          const [u, o2] = await Promise.all([cg.usage(), cg.oomKilled()]);
          usage = u;
          oom = oom || o2;
        } else if (rss) {
          usage = { peakMemory: rss.peak(), cpuSeconds: rss.cpuSeconds() };
        }

        if (spawnError) {
          ctx.logs.write('system', `[tsched] could not start ${argv[0]}: ${spawnError.message}\n`);
          return finish({ outcome: 'failed', exitCode: null, reason: `spawn_failed: ${spawnError.code} ${argv[0]}`, usage });
        }
        const killed = killedResult();
        if (killed) return { ...killed, usage };
        if (oom) {
          ctx.logs.write('system', `[tsched] killed: memory limit of ${a.allocation.memory} bytes exceeded\n`);
          return finish({ outcome: 'failed', exitCode: code, reason: 'resource_exceeded: memory', usage });
        }
        if (code === 0) {
          failed = false;
          return finish({ outcome: 'succeeded', exitCode: 0, reason: null, usage });
        }
        if (code !== null) return finish({ outcome: 'failed', exitCode: code, reason: `exit_code: ${code}`, usage });
        return finish({ outcome: 'failed', exitCode: null, reason: `signal: ${signal}`, usage });
      } catch (e) {
        o.onWarning?.(`run ${a.runId}: executor error`, e);
        return finish({ outcome: 'failed', exitCode: null, reason: `worker_error: ${(e as Error).message}` });
      } finally {
        if (capTimer) clearTimeout(capTimer);
        if (escalate) clearTimeout(escalate);
        rss?.stop();
        const cleanup = (async () => {
          await pidWrite;
          await Promise.all([
            cg?.remove(),
            pidWrite ? o.pids.remove(a.runId) : undefined,
            failed && o.keepFailedWorkDirs ? undefined : this.removeRunDir(runDir),
          ]);
        })();
        this.cleanups.add(cleanup);
        void cleanup.finally(() => this.cleanups.delete(cleanup));
      }
    })();

    return { runId: a.runId, kill, done };
  }

  private async liveSpawner(): Promise<Spawner | null> {
    this.spawnerReady ??= Spawner.start(this.opts.onWarning).then((sp) => {
      this.spawner = sp;
      return sp;
    });
    const sp = await this.spawnerReady;
    return sp?.alive ? sp : null;
  }

  /** The directory run directories go in, made once. */
  private runsParent(runDir: string): Promise<void> {
    this.parentReady ??= fsp.mkdir(dirname(runDir), { recursive: true }).then(
      () => {},
      (e) => {
        this.parentReady = undefined;
        throw e;
      },
    );
    return this.parentReady;
  }

  /** Most runs leave their directory empty: one rmdir (by the spawner when there is one), and the recursive walk only when needed. */
  private async removeRunDir(dir: string): Promise<void> {
    const sp = this.spawner?.alive ? this.spawner : null;
    let code: string | null;
    if (sp) code = await sp.rmdir(dir);
    else
      code = await fsp.rmdir(dir).then(
        () => null,
        (e: NodeJS.ErrnoException) => e.code ?? 'EUNKNOWN',
      );
    if (code !== null && code !== 'ENOENT') await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
  }

  /**
   * Starts argv in runDir, in its own session and process group, inside the run's cgroup from its first
   * instruction: through the spawner helper when there is one, else Node's spawn (with the /bin/sh wrapper
   * joining the cgroup).
   */
  private launch(
    runId: number,
    argv: string[],
    cwd: string,
    env: Record<string, string>,
    cg: RunCgroup | null,
    ctx: ExecContext,
    dirMade: boolean,
  ): Launched {
    const sp = this.spawner?.alive ? this.spawner : null;
    let error: { code: string; message: string } | null = null;
    let dropped = false;
    if (sp?.alive) {
      let onPid!: (pid: number | null) => void;
      let onExit!: (r: { code: number | null; signal: NodeJS.Signals | null }) => void;
      let onDone!: () => void;
      const started = new Promise<number | null>((r) => (onPid = r));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => (onExit = r));
      const closed = new Promise<void>((r) => (onDone = r));
      sp.spawn(
        { runId, cwd, procsFiles: cg?.procsFiles ?? [], argv, env },
        {
          onPid: (pid) => onPid(pid),
          onFail: (code, message) => {
            error = { code, message };
            onPid(null);
          },
          onData: (stream, data) => {
            if (!dropped) ctx.logs.write(stream, data);
          },
          onExit: (code, signal) => {
            onPid(null); // no-op when the pid came first
            onExit({ code, signal });
          },
          onDone: () => onDone(),
        },
      );
      return { started, exited, closed, spawnError: () => error, dropPipes: () => (dropped = true) };
    }
    // The spawner was to make the directory, but it went away meanwhile.
    if (!dirMade) mkdirSync(cwd, { recursive: true });
    const [file, ...args] = cg
      ? ['/bin/sh', '-c', CGROUP_WRAPPER, 'tsched-run', String(cg.procsFiles.length), ...cg.procsFiles, ...argv]
      : argv;
    const c = spawn(file as string, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      c.once('exit', (code, signal) => resolve({ code, signal }));
      c.once('error', (err: NodeJS.ErrnoException) => {
        error = { code: err.code ?? 'EUNKNOWN', message: err.message };
        resolve({ code: null, signal: null });
      });
    });
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.stdout?.setEncoding('utf8');
    c.stderr?.setEncoding('utf8');
    c.stdout?.on('data', (d: string) => ctx.logs.write('stdout', d));
    c.stderr?.on('data', (d: string) => ctx.logs.write('stderr', d));
    return {
      started: Promise.resolve(c.pid ?? null),
      exited,
      closed,
      spawnError: () => error,
      dropPipes: () => {
        c.stdout?.destroy();
        c.stderr?.destroy();
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.cleanups]);
    const sp = await this.spawnerReady;
    this.spawner = undefined;
    this.spawnerReady = undefined;
    await sp?.close();
  }
}

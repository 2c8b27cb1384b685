// The shell executor: runs a task's argv (no shell unless asked), inline script or scriptPath as a child
// process in its own session and process group, in a fresh directory, under a per-run cgroup when the
// machine has one (else an RSS watcher), with the execution cap counted down locally.

import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { RunUsage } from '../../domain/task.js';
import type { WireAssignment } from '../../protocol/worker-api.js';
import type { Cgroups, RunCgroup } from '../cgroups.js';
import type { PidRecords } from '../pids.js';
import type { RssWatch, RssWatcher } from '../rss-watch.js';
import { resolveScriptPath, ScriptPathRefused } from '../script-path.js';
import type { ExecContext, ExecResult, Executor, KillReason, RunningRun } from './types.js';

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

/** Most runs leave their directory empty: one rmdir, and the recursive walk only when needed. */
async function removeRunDir(dir: string): Promise<void> {
  try {
    await fsp.rmdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

const NO_USAGE: RunUsage = { peakMemory: null, cpuSeconds: null };

export class ShellExecutor implements Executor {
  readonly name = 'shell' as const;
  private readonly baseEnv: Record<string, string>;
  private readonly grace: number;
  private readonly cleanups = new Set<Promise<void>>();

  constructor(private readonly opts: ShellExecutorOptions) {
    this.baseEnv = opts.baseEnv ?? defaultBaseEnv();
    this.grace = opts.killGraceMs ?? 10_000;
  }

  start(a: WireAssignment, ctx: ExecContext): RunningRun {
    const o = this.opts;
    let child: ChildProcess | null = null;
    let cg: RunCgroup | null = null;
    let killReason: KillReason | null = null;
    let escalate: NodeJS.Timeout | null = null;

    const hardKill = () => {
      if (child?.pid) killGroup(child.pid, 'SIGKILL');
      if (cg) void cg.killAll();
    };
    const kill = (reason: KillReason) => {
      if (killReason) {
        // A later, harsher request (orphaned/shutdown after a cancel) cuts the grace short.
        if (reason === 'orphaned') hardKill();
        return;
      }
      killReason = reason;
      if (!child?.pid) return; // not started yet: the setup sees killReason and never spawns
      if (reason === 'orphaned') {
        hardKill();
        return;
      }
      killGroup(child.pid, 'SIGTERM');
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
      const killedResult = (): ExecResult | null => {
        if (killReason === 'timed_out') return finish({ outcome: 'timed_out', exitCode: null, reason: 'execution_cap_exceeded' });
        if (killReason === 'cancelled') return finish({ outcome: 'cancelled', exitCode: null, reason: 'cancelled' });
        if (killReason === 'orphaned') return finish({ outcome: 'lost', exitCode: null, reason: 'lease_stale' });
        if (killReason === 'shutdown') return finish({ outcome: 'lost', exitCode: null, reason: 'worker_shutdown' });
        return null;
      };
      try {
        if (a.capRemainingMs <= 0) {
          killReason = 'timed_out';
          return killedResult() as ExecResult;
        }
        capTimer = setTimeout(() => kill('timed_out'), a.capRemainingMs);
        await fsp.mkdir(runDir, { recursive: true });

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

        const [file, ...args] = cg
          ? ['/bin/sh', '-c', CGROUP_WRAPPER, 'tsched-run', String(cg.procsFiles.length), ...cg.procsFiles, ...argv]
          : argv;
        const env = runEnv(a, this.baseEnv);
        let spawnError: NodeJS.ErrnoException | null = null;
        const c = spawn(file as string, args, { cwd: runDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
        child = c;
        const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
          c.once('exit', (code, signal) => resolve({ code, signal }));
          c.once('error', (err: NodeJS.ErrnoException) => {
            spawnError = err;
            resolve({ code: null, signal: null });
          });
        });
        const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
        c.stdout?.setEncoding('utf8');
        c.stderr?.setEncoding('utf8');
        c.stdout?.on('data', (d: string) => ctx.logs.write('stdout', d));
        c.stderr?.on('data', (d: string) => ctx.logs.write('stderr', d));

        const pid = c.pid;
        if (pid !== undefined) {
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

        const { code, signal } = await exited;
        // Whatever the leader left behind in its group or cgroup dies with it.
        if (pid !== undefined) killGroup(pid, 'SIGKILL');
        if (cg) await cg.killAll();
        // Drain the pipes, but never wait on a process that escaped with our pipe open.
        await Promise.race([closed, new Promise((r) => setTimeout(r, 1000).unref())]);
        c.stdout?.destroy();
        c.stderr?.destroy();

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
          const err = spawnError as NodeJS.ErrnoException;
          ctx.logs.write('system', `[tsched] could not start ${argv[0]}: ${err.message}\n`);
          return finish({ outcome: 'failed', exitCode: null, reason: `spawn_failed: ${err.code ?? err.message} ${argv[0]}`, usage });
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
            failed && o.keepFailedWorkDirs ? undefined : removeRunDir(runDir),
          ]);
        })();
        this.cleanups.add(cleanup);
        void cleanup.finally(() => this.cleanups.delete(cleanup));
      }
    })();

    return { runId: a.runId, kill, done };
  }

  async close(): Promise<void> {
    await Promise.all([...this.cleanups]);
  }
}

// The docker executor: runs a task's command, inline script or scriptPath inside the task's image, in a
// container limited to the run's allocation (NanoCpus, Memory with no extra swap, a pids limit) with the
// allocated ports published. Logs are streamed from an attach made before the start, so nothing is missed.
// Kills go through `docker stop` (SIGTERM via docker-init to the task, the grace, then SIGKILL). The
// container is removed after its exit code and OOM flag are read. The task cannot ask for privileges, host
// networking or the Docker socket: only the worker's configuration can grant them.

import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, join } from 'node:path';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type Docker from 'dockerode';
import type { RunUsage } from '../../domain/task.js';
import type { WireAssignment } from '../../protocol/worker-api.js';
import { dockerClient, LABEL_RUN, LABEL_TASK, LABEL_WORKER } from '../docker-leftovers.js';
import { resolveScriptPath, ScriptPathRefused } from '../script-path.js';
import { runEnv } from './shell.js';
import {
  type ExecContext,
  type ExecResult,
  type Executor,
  KILL_OUTCOMES,
  type KillReason,
  type LogSink,
  type LogStream,
  type RunningRun,
} from './types.js';

export { cleanupDockerLeftovers, dockerAvailable, LABEL_RUN, LABEL_TASK, LABEL_WORKER } from '../docker-leftovers.js';

export type PullPolicy = 'if-not-present' | 'always' | 'never';
export const PULL_POLICIES: readonly PullPolicy[] = ['if-not-present', 'always', 'never'];

export interface DockerExecutorOptions {
  /** The Docker Engine socket; default DOCKER_HOST or /var/run/docker.sock. */
  socketPath?: string;
  /** Containers of this worker run privileged. Off by default; a task can never ask for it. */
  allowPrivileged?: boolean;
  /** Containers of this worker share the host's network (ports are then bound directly). Off by default. */
  allowHostNetwork?: boolean;
  /** Containers of this worker get the Docker socket at /var/run/docker.sock. Off by default. */
  allowDockerSocket?: boolean;
  pullPolicy?: PullPolicy;
  /** Labelled on every container, so a restarted worker finds its leftovers. */
  workerName: string;
  /** Between SIGTERM and SIGKILL; Docker counts it in whole seconds (rounded up). Default 10 s. */
  killGraceMs?: number;
  scriptsRoot?: string;
  /** Inline scripts are written under workDir/docker-runs/. */
  workDir: string;
  /** The host address allocated ports are published on. Default 0.0.0.0 (every interface), like a service. */
  portHost?: string;
  /** Most processes a container may have (fork bombs stop here). Default 1024. */
  pidsLimit?: number;
  /** A client to use instead of one made from socketPath. */
  docker?: Docker;
  onWarning?: (msg: string, err?: unknown) => void;
}

/** How often, and how far apart, an unexplained SIGKILL's container is inspected again for Docker's OOM flag. */
const OOM_FLAG_RECHECKS = 10;
const OOM_FLAG_RECHECK_MS = 50;
const MIN_MEMORY = 6 * 1024 * 1024;
const MIN_NANO_CPUS = 10_000_000;
const NO_USAGE: RunUsage = { peakMemory: null, cpuSeconds: null };
/** Where an inline script or a scriptPath appears inside the container. */
export const CONTAINER_SCRIPT_DIR = '/tsched';

function statusCode(e: unknown): number | undefined {
  return (e as { statusCode?: number } | null)?.statusCode;
}

function message(e: unknown): string {
  const err = e as { json?: { message?: string }; message?: string } | null;
  const m = err?.json?.message ?? err?.message ?? String(e);
  return m.replace(/^\(HTTP code \d+\)[^-]*- /, '').trim();
}

/** A writable that decodes UTF-8 across chunk boundaries and hands text to the run's log sink. */
function logWritable(logs: LogSink, stream: LogStream): Writable {
  const decoder = new StringDecoder('utf8');
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.write(stream, decoder.write(chunk));
      cb();
    },
    final(cb) {
      logs.write(stream, decoder.end());
      cb();
    },
  });
}

/** Follows a container's stats stream, keeping the figures of the last sample (best effort). */
class StatsFollower {
  peakMemory: number | null = null;
  cpuSeconds: number | null = null;
  private stream: NodeJS.ReadableStream | null = null;
  private buf = '';
  private stopped = false;

  async follow(container: Docker.Container): Promise<void> {
    try {
      const s = (await container.stats({ stream: true })) as NodeJS.ReadableStream;
      if (this.stopped) {
        (s as unknown as { destroy?: () => void }).destroy?.();
        return;
      }
      this.stream = s;
      s.on('data', (d: Buffer) => this.onData(d));
      s.on('error', () => {});
    } catch {
      /* stats are best effort */
    }
  }

  private onData(d: Buffer): void {
    this.buf += d.toString('utf8');
    let nl = this.buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.sample(line);
      nl = this.buf.indexOf('\n');
    }
  }

  private sample(line: string): void {
    try {
      const s = JSON.parse(line) as Docker.ContainerStats;
      const mem = s.memory_stats;
      // cgroup v1 reports max_usage (the peak); v2 does not, so keep the highest usage seen.
      const peak = Math.max(mem?.max_usage ?? 0, mem?.usage ?? 0);
      if (peak > 0) this.peakMemory = Math.max(this.peakMemory ?? 0, peak);
      const cpu = s.cpu_stats?.cpu_usage?.total_usage;
      if (typeof cpu === 'number' && cpu > 0) this.cpuSeconds = Math.max(this.cpuSeconds ?? 0, cpu / 1e9);
    } catch {
      /* a partial or odd sample */
    }
  }

  stop(): RunUsage {
    this.stopped = true;
    (this.stream as unknown as { destroy?: () => void } | null)?.destroy?.();
    return { peakMemory: this.peakMemory, cpuSeconds: this.cpuSeconds };
  }
}

export class DockerExecutor implements Executor {
  readonly name = 'docker' as const;
  readonly docker: Docker;
  private readonly grace: number;
  private readonly pullPolicy: PullPolicy;
  private readonly cleanups = new Set<Promise<void>>();

  constructor(private readonly opts: DockerExecutorOptions) {
    if (!opts.workerName) throw new Error('createDockerExecutor: workerName is required (it labels every container)');
    if (opts.pullPolicy !== undefined && !PULL_POLICIES.includes(opts.pullPolicy))
      throw new Error(`createDockerExecutor: pullPolicy must be one of ${PULL_POLICIES.join(', ')}; got "${opts.pullPolicy}"`);
    this.docker = opts.docker ?? dockerClient(opts.socketPath);
    this.grace = opts.killGraceMs ?? 10_000;
    this.pullPolicy = opts.pullPolicy ?? 'if-not-present';
  }

  start(a: WireAssignment, ctx: ExecContext): RunningRun {
    const o = this.opts;
    let container: Docker.Container | null = null;
    let running = false;
    let killReason: KillReason | null = null;
    let wake: () => void = () => {};
    // Settles when a kill arrives, so slow setup steps (a pull) can be abandoned.
    const killed = new Promise<void>((resolve) => {
      wake = resolve;
    });

    const hardKill = () => {
      void container?.kill({ signal: 'SIGKILL' }).catch(() => {});
    };
    const softStop = () => {
      const c = container;
      if (!c) return;
      c.stop({ t: Math.max(0, Math.ceil(this.grace / 1000)) }).catch((e) => {
        // 304: already stopped. Anything else: do not leave it running.
        if (statusCode(e) !== 304 && statusCode(e) !== 404) hardKill();
      });
    };
    const kill = (reason: KillReason) => {
      if (killReason) {
        // A later, harsher request (orphaned after a cancel) cuts the grace short.
        if (reason === 'orphaned' && running) hardKill();
        return;
      }
      killReason = reason;
      wake();
      if (!running) return; // not started yet: the setup sees killReason and stops there
      if (reason === 'orphaned') hardKill();
      else softStop();
    };

    const runDir = join(o.workDir, 'docker-runs', `${a.runId}-${randomBytes(4).toString('hex')}`);
    const done = (async (): Promise<ExecResult> => {
      let capTimer: NodeJS.Timeout | null = null;
      let startedAt: number | null = null;
      let madeRunDir = false;
      const stats = new StatsFollower();
      const finish = (r: Omit<ExecResult, 'finishedAt' | 'startedAt' | 'usage'> & { usage?: RunUsage }): ExecResult => ({
        usage: NO_USAGE,
        ...r,
        startedAt,
        finishedAt: Date.now(),
      });
      const fail = (reason: string): ExecResult => {
        ctx.logs.write('system', `[tsched] ${reason}\n`);
        return finish({ outcome: 'failed', exitCode: null, reason });
      };
      const killedResult = (): ExecResult | null => (killReason ? finish({ ...KILL_OUTCOMES[killReason], exitCode: null }) : null);
      try {
        if (a.capRemainingMs <= 0) {
          killReason = 'timed_out';
          return killedResult() as ExecResult;
        }
        capTimer = setTimeout(() => kill('timed_out'), a.capRemainingMs);
        if (!a.image) return fail('invalid_assignment: the docker executor needs an image');

        // The image, by the pull policy. A kill during a long pull ends the run at once.
        const imageProblem = await Promise.race([this.ensureImage(a.image, ctx.logs), killed.then(() => null)]);
        if (killReason) return killedResult() as ExecResult;
        if (imageProblem) return fail(imageProblem);

        // What to run, and the read-only mounts it needs.
        const binds: string[] = [];
        let cmd: string[];
        if (a.scriptPath !== null) {
          let real: string;
          try {
            real = await resolveScriptPath(o.scriptsRoot, a.scriptPath);
          } catch (e) {
            if (!(e instanceof ScriptPathRefused)) throw e;
            return fail(`script_path_refused: ${e.message}`);
          }
          const inside = `${CONTAINER_SCRIPT_DIR}/${basename(real)}`;
          binds.push(`${real}:${inside}:ro`);
          cmd = ['/bin/sh', inside, ...a.command];
        } else if (a.script !== null) {
          await fsp.mkdir(runDir, { recursive: true });
          madeRunDir = true;
          // World-readable: the image may run as a non-root user.
          await fsp.writeFile(join(runDir, 'script'), a.script, { mode: 0o644 });
          binds.push(`${join(runDir, 'script')}:${CONTAINER_SCRIPT_DIR}/script:ro`);
          cmd = ['/bin/sh', `${CONTAINER_SCRIPT_DIR}/script`];
        } else if (a.shell) {
          cmd = ['/bin/sh', '-c', a.command.join(' ')];
        } else {
          cmd = a.command;
        }
        if (cmd.length === 0) return fail('nothing_to_run: the task has no command, script or scriptPath');
        if (killReason) return killedResult() as ExecResult;

        const c = await this.docker.createContainer(this.containerSpec(a, cmd, binds));
        container = c;
        if (killReason) return killedResult() as ExecResult;

        // Attach before the start, so the first line printed is not lost.
        const attach = await c.attach({ stream: true, stdout: true, stderr: true });
        const out = logWritable(ctx.logs, 'stdout');
        const err = logWritable(ctx.logs, 'stderr');
        const attachEnded = new Promise<void>((resolve) => {
          attach.once('end', resolve);
          attach.once('close', resolve);
          attach.once('error', () => resolve());
        });
        this.docker.modem.demuxStream(attach, out, err);

        try {
          await c.start();
        } catch (e) {
          (attach as unknown as { destroy?: () => void }).destroy?.();
          return fail(`container_start_failed: ${message(e)}`);
        }
        running = true;
        startedAt = Date.now();
        ctx.onStarted(startedAt);
        void stats.follow(c);
        // A kill that arrived while we were starting.
        if (killReason) {
          const r = killReason;
          killReason = null;
          kill(r);
        }

        const waited = (await c.wait()) as { StatusCode?: number };
        running = false;
        // Drain what the container printed last, but never hang on a stuck stream.
        await Promise.race([attachEnded, new Promise((r) => setTimeout(r, 2000).unref())]);
        (attach as unknown as { destroy?: () => void }).destroy?.();
        out.end();
        err.end();
        const usage = stats.stop();

        let info = await c.inspect();
        const code = info.State?.ExitCode ?? waited.StatusCode ?? null;
        const killedRes = killedResult();
        if (killedRes) return { ...killedRes, exitCode: code, usage };
        // containerd can publish a container's exit before its OOM event when the kill comes right after the
        // start (containerd/containerd#8180): a SIGKILL we did not send gets a moment for the flag to land.
        for (let i = 0; code === 137 && !info.State?.OOMKilled && i < OOM_FLAG_RECHECKS; i++) {
          await new Promise((r) => setTimeout(r, OOM_FLAG_RECHECK_MS));
          info = await c.inspect();
        }
        if (info.State?.OOMKilled) {
          ctx.logs.write('system', `[tsched] killed: memory limit of ${a.allocation.memory} bytes exceeded\n`);
          return finish({ outcome: 'failed', exitCode: code, reason: 'resource_exceeded: memory', usage });
        }
        if (code === 0) return finish({ outcome: 'succeeded', exitCode: 0, reason: null, usage });
        return finish({ outcome: 'failed', exitCode: code, reason: `exit_code: ${code}`, usage });
      } catch (e) {
        o.onWarning?.(`run ${a.runId}: docker executor error`, e);
        const killedRes = killedResult();
        if (killedRes) return killedRes;
        return fail(`docker_error: ${message(e)}`);
      } finally {
        if (capTimer) clearTimeout(capTimer);
        running = false;
        stats.stop();
        const c = container;
        const cleanup = (async () => {
          await Promise.all([
            c?.remove({ force: true, v: true }).catch((e) => {
              if (statusCode(e) !== 404 && statusCode(e) !== 409) o.onWarning?.(`run ${a.runId}: could not remove its container`, e);
            }),
            madeRunDir ? fsp.rm(runDir, { recursive: true, force: true }).catch(() => {}) : undefined,
          ]);
        })();
        this.cleanups.add(cleanup);
        void cleanup.finally(() => this.cleanups.delete(cleanup));
        // The container is gone before the run is reported done: no leftovers between runs.
        await cleanup;
      }
    })();

    return { runId: a.runId, kill, done };
  }

  /** The image by the pull policy: null when it is there, else the reason the run fails. */
  private async ensureImage(image: string, logs: LogSink): Promise<string | null> {
    // Docker validates references itself (400); whitespace would not even make a valid request path.
    if (/[\s\0]/.test(image)) return `image_invalid: ${image}: expected a Docker image reference without whitespace`;
    if (this.pullPolicy !== 'always') {
      try {
        await this.docker.getImage(image).inspect();
        return null;
      } catch (e) {
        if (statusCode(e) === 400) return `image_invalid: ${image}: ${message(e)}`;
        if (statusCode(e) !== 404) throw e;
      }
      if (this.pullPolicy === 'never') return `image_not_found: ${image} (pull policy never)`;
    }
    logs.write('system', `[tsched] pulling ${image} (pull policy ${this.pullPolicy})\n`);
    try {
      const progress = await this.docker.pull(image);
      await new Promise<void>((resolve, reject) =>
        this.docker.modem.followProgress(progress, (err: Error | null, out: Array<{ error?: string }>) => {
          const bad = out?.find((x) => x.error);
          if (err || bad) reject(err ?? new Error(bad?.error));
          else resolve();
        }),
      );
      return null;
    } catch (e) {
      return `image_pull_failed: ${image}: ${message(e)}`;
    }
  }

  /** The container for one run: limits from the allocation, labels, ports, and the worker's security stance. */
  containerSpec(a: WireAssignment, cmd: string[], binds: string[]): Docker.ContainerCreateOptions {
    const o = this.opts;
    const env = runEnv(a, {});
    const exposed: Record<string, object> = {};
    const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
    if (!o.allowHostNetwork) {
      for (const p of a.allocation.ports) {
        for (const proto of ['tcp', 'udp']) {
          exposed[`${p}/${proto}`] = {};
          bindings[`${p}/${proto}`] = [{ HostIp: o.portHost ?? '0.0.0.0', HostPort: String(p) }];
        }
      }
    }
    // Docker's floors: 0.01 cpus and 6 MiB of memory. An allocation below them gets the floor.
    const mem = a.allocation.memory > 0 ? Math.max(a.allocation.memory, MIN_MEMORY) : undefined;
    const nanoCpus = a.allocation.cpus > 0 ? Math.max(Math.round(a.allocation.cpus * 1e6), MIN_NANO_CPUS) : undefined;
    return {
      name: `tsched-run-${a.runId}-${randomBytes(3).toString('hex')}`,
      Image: a.image as string,
      Cmd: cmd,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      Labels: { [LABEL_RUN]: String(a.runId), [LABEL_TASK]: String(a.taskId), [LABEL_WORKER]: o.workerName },
      AttachStdout: true,
      AttachStderr: true,
      AttachStdin: false,
      OpenStdin: false,
      Tty: false,
      ExposedPorts: exposed,
      HostConfig: {
        NanoCpus: nanoCpus, // allocation.cpus is in millicores
        Memory: mem,
        MemorySwap: mem, // equal to Memory: no swap on top of the limit
        PidsLimit: o.pidsLimit ?? 1024,
        PortBindings: bindings,
        Binds: o.allowDockerSocket ? [...binds, `${o.socketPath ?? '/var/run/docker.sock'}:/var/run/docker.sock`] : binds,
        // docker-init as PID 1: forwards SIGTERM to the task and reaps its children.
        Init: true,
        AutoRemove: false,
        Privileged: o.allowPrivileged === true,
        NetworkMode: o.allowHostNetwork ? 'host' : 'bridge',
        SecurityOpt: o.allowPrivileged ? [] : ['no-new-privileges'],
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.cleanups]);
  }
}

export function createDockerExecutor(opts: DockerExecutorOptions): Executor {
  return new DockerExecutor(opts);
}

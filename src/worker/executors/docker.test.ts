// The docker executor against the real Docker Engine, with a busybox image built locally (no registry).
// Skips loudly when Docker is absent on a developer machine; fails in CI.

import { promises as fsp, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBusyboxImage, TEST_IMAGE } from '../../../test/helpers/docker-image.js';
import { dockerAvailable as dockerCliAvailable, requireService } from '../../../test/helpers/services.js';
import type { WireAssignment } from '../../protocol/worker-api.js';
import { assignment, RecordingSink } from '../test-helpers.js';
import {
  cleanupDockerLeftovers,
  createDockerExecutor,
  DockerExecutor,
  type DockerExecutorOptions,
  dockerAvailable,
  LABEL_RUN,
  LABEL_WORKER,
} from './docker.js';
import type { ExecResult, Executor, RunningRun } from './types.js';

const haveDocker = requireService('Docker', dockerCliAvailable());
const MiB = 1024 * 1024;

/** Host-wide CPU time from /proc/stat (jiffies): idle (idle + iowait) and total. */
function hostCpu(): { idle: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const total = f.slice(0, 8).reduce((x, y) => x + y, 0);
  return { idle: (f[3] ?? 0) + (f[4] ?? 0), total };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '0.0.0.0', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Connects to 127.0.0.1:port and returns what the server sends before closing (retrying until it answers). */
async function readFrom(port: number, deadlineMs = 20_000): Promise<string> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const got = await new Promise<string>((resolve) => {
      let data = '';
      const s = connect(port, '127.0.0.1');
      s.setTimeout(2000, () => s.destroy());
      s.on('data', (d) => {
        data += d;
      });
      s.on('error', () => resolve(''));
      s.on('close', () => resolve(data));
    });
    if (got) return got;
    if (Date.now() > until) throw new Error(`nothing answered on port ${port}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(!haveDocker)('docker executor (real Docker Engine)', () => {
  const docker = new Docker();
  const workerName = `test-docker-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let workDir: string;
  let scriptsRoot: string;
  let exec: Executor;
  const extraExecutors: Executor[] = [];

  function executor(over: Partial<DockerExecutorOptions> = {}): Executor {
    const e = createDockerExecutor({ workerName, workDir, scriptsRoot, killGraceMs: 1000, ...over });
    extraExecutors.push(e);
    return e;
  }

  function start(over: Partial<WireAssignment>, ex: Executor = exec) {
    const sink = new RecordingSink();
    let startedAt: number | null = null;
    let onStarted: () => void = () => {};
    const started = new Promise<void>((r) => {
      onStarted = r;
    });
    const run: RunningRun = ex.start(assignment({ executor: 'docker', image: TEST_IMAGE, ...over }), {
      logs: sink,
      onStarted(at) {
        startedAt = at;
        onStarted();
      },
    });
    return { run, sink, started, startedAt: () => startedAt };
  }

  async function run(over: Partial<WireAssignment>, ex: Executor = exec): Promise<{ r: ExecResult; sink: RecordingSink }> {
    const s = start(over, ex);
    return { r: await s.run.done, sink: s.sink };
  }

  async function containersOf(runId: number): Promise<Docker.ContainerInfo[]> {
    return docker.listContainers({ all: true, filters: { label: [`${LABEL_RUN}=${runId}`, `${LABEL_WORKER}=${workerName}`] } });
  }

  async function containerOf(runId: number): Promise<Docker.Container> {
    for (let i = 0; i < 100; i++) {
      const [c] = await containersOf(runId);
      if (c) return docker.getContainer(c.Id);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no container for run ${runId}`);
  }

  beforeAll(async () => {
    await ensureBusyboxImage();
    workDir = await fsp.mkdtemp(join(tmpdir(), 'tsched-docker-'));
    scriptsRoot = join(workDir, 'scripts');
    await fsp.mkdir(scriptsRoot, { recursive: true });
    exec = executor();
  }, 300_000);

  afterAll(async () => {
    await Promise.all(extraExecutors.map((e) => e.close?.()));
    await cleanupDockerLeftovers(workerName, docker).catch(() => {});
    if (workDir) await fsp.rm(workDir, { recursive: true, force: true });
  });

  it('runs echo hello: succeeded, stdout and stderr captured with timestamps, container removed', async () => {
    const before = Date.now();
    const s = start({ command: ['sh', '-c', 'echo hello; echo oops >&2'] });
    const r = await s.run.done;
    expect(r.outcome).toBe('succeeded');
    expect(r.exitCode).toBe(0);
    expect(r.reason).toBeNull();
    expect(s.sink.text('stdout')).toBe('hello\n');
    expect(s.sink.text('stderr')).toBe('oops\n');
    for (const e of s.sink.entries) expect(e.at).toBeGreaterThanOrEqual(before);
    expect(s.startedAt()).not.toBeNull();
    expect(r.startedAt).toBe(s.startedAt());
    expect(r.finishedAt).toBeGreaterThanOrEqual(r.startedAt as number);
    expect(await containersOf(s.run.runId)).toEqual([]);
  });

  it('reports a non-zero exit code as failed', async () => {
    const { r } = await run({ command: ['sh', '-c', 'exit 3'] });
    expect(r.outcome).toBe('failed');
    expect(r.exitCode).toBe(3);
    expect(r.reason).toBe('exit_code: 3');
  });

  it('passes the task env, the tsched variables and the allocated ports', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const a = assignment({
      executor: 'docker',
      image: TEST_IMAGE,
      env: { FOO: 'bar baz' },
      command: ['sh', '-c', 'echo "$FOO|$PORT|$PORTS|$PORT_WEB|$TSCHED_TASK_ID|$TSCHED_RUN_ID|$TSCHED_ATTEMPT"'],
      attempt: 2,
      allocation: { cpus: 500, memory: 64 * MiB, ports: [p1, p2], namedPorts: { web: p2 } },
    });
    const sink = new RecordingSink();
    const r = await exec.start(a, { logs: sink, onStarted() {} }).done;
    expect(r.outcome).toBe('succeeded');
    expect(sink.text('stdout')).toBe(`bar baz|${p1}|${p1},${p2}|${p2}|${a.taskId}|${a.runId}|2\n`);
  });

  it('runs `shell: true` commands, inline scripts and scriptPaths (read-only mounts)', async () => {
    const sh = await run({ command: ['echo', '$((40+2))'], shell: true });
    expect(sh.sink.text('stdout')).toBe('42\n');

    const inline = await run({ script: 'echo from-script\necho x > /tsched/script 2>/dev/null || echo read-only\n' });
    expect(inline.r.outcome).toBe('succeeded');
    expect(inline.sink.text('stdout')).toBe('from-script\nread-only\n');

    await fsp.writeFile(join(scriptsRoot, 'greet.sh'), 'echo "hi $1"\n');
    const byPath = await run({ scriptPath: 'greet.sh', command: ['there'] });
    expect(byPath.r.outcome).toBe('succeeded');
    expect(byPath.sink.text('stdout')).toBe('hi there\n');

    await fsp.symlink('/etc/passwd', join(scriptsRoot, 'escape.sh'));
    const refused = await run({ scriptPath: 'escape.sh' });
    expect(refused.r.outcome).toBe('failed');
    expect(refused.r.reason).toMatch(/^script_path_refused: .*outside the scripts root/);
    expect(refused.r.startedAt).toBeNull();
  });

  it('kills a memory hog at its 32 MiB limit: failed, resource_exceeded: memory', async () => {
    // dd reads 200 MiB of zeros into one buffer: every page is really touched.
    const { r, sink } = await run({
      command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=200M', 'count=1'],
      allocation: { cpus: 1000, memory: 32 * MiB, ports: [], namedPorts: {} },
    });
    expect(r.outcome).toBe('failed');
    expect(r.reason).toBe('resource_exceeded: memory');
    expect(r.exitCode).toBe(137);
    expect(sink.text('system')).toContain('memory limit');
  });

  it('kills a shell that grows a string past its limit too', async () => {
    const { r } = await run({
      command: ['sh', '-c', 'x=$(head -c 200m /dev/zero | tr "\\0" a); echo ${#x}'],
      allocation: { cpus: 1000, memory: 32 * MiB, ports: [], namedPorts: {} },
    });
    expect(r.outcome).toBe('failed');
    expect(r.reason).toBe('resource_exceeded: memory');
  });

  it('holds a CPU hog to its 0.5-core quota, and reports cpu seconds', async () => {
    // Two spinning processes: unlimited, they would take both cores.
    const s = start({
      command: ['sh', '-c', 'yes > /dev/null & yes > /dev/null'],
      allocation: { cpus: 500, memory: 64 * MiB, ports: [], namedPorts: {} },
    });
    await s.started;
    const c = await containerOf(s.run.runId);
    await new Promise((r) => setTimeout(r, 500));
    const sample = async () => (await c.stats({ stream: false, 'one-shot': true })).cpu_stats;
    const h0 = hostCpu();
    const t0 = process.hrtime.bigint();
    const s0 = await sample();
    await new Promise((r) => setTimeout(r, 2500));
    const s1 = await sample();
    const t1 = process.hrtime.bigint();
    const h1 = hostCpu();
    const cores = (s1.cpu_usage.total_usage - s0.cpu_usage.total_usage) / Number(t1 - t0);
    const throttled = s1.throttling_data.throttled_periods - s0.throttling_data.throttled_periods;
    // Cores the host left idle meanwhile: what the hog could have taken on top had it no quota.
    const idleCores = ((h1.idle - h0.idle) / (h1.total - h0.total)) * cpus().length;
    console.info(
      `cpu hog at 0.5 cpus used ${cores.toFixed(3)} cores (host idle ${idleCores.toFixed(2)} cores); throttled in ${throttled} CFS periods`,
    );
    expect(cores).toBeLessThan(0.7); // never above its quota
    if (idleCores > 0.3) {
      // CPU was there for the taking, so only the quota held it: ≈ 0.5 and throttled.
      expect(cores).toBeGreaterThan(0.3);
      expect(throttled).toBeGreaterThan(0);
    } else {
      console.warn(`the host was saturated (idle ${idleCores.toFixed(2)} cores): only the upper bound of the quota was checked`);
      expect(cores).toBeGreaterThan(0.02);
    }
    s.run.kill('cancelled');
    const r = await s.run.done;
    expect(r.outcome).toBe('cancelled');
    expect(r.usage.cpuSeconds).toBeGreaterThan(0.05);
    expect(r.usage.peakMemory).toBeGreaterThan(0);
  });

  it('publishes distinct allocated ports that two containers really bind', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const serve = 'while true; do echo "hello-$PORT" | nc -l -p "$PORT"; done';
    const a = start({ command: ['sh', '-c', serve], allocation: { cpus: 250, memory: 32 * MiB, ports: [p1], namedPorts: {} } });
    const b = start({ command: ['sh', '-c', serve], allocation: { cpus: 250, memory: 32 * MiB, ports: [p2], namedPorts: {} } });
    await Promise.all([a.started, b.started]);
    expect((await readFrom(p1)).trim()).toBe(`hello-${p1}`);
    expect((await readFrom(p2)).trim()).toBe(`hello-${p2}`);
    a.run.kill('cancelled');
    b.run.kill('cancelled');
    const [ra, rb] = await Promise.all([a.run.done, b.run.done]);
    expect(ra.outcome).toBe('cancelled');
    expect(rb.outcome).toBe('cancelled');
  });

  it('cancels a process tree that keeps forking and ignores SIGTERM: SIGKILL after the grace, container removed', async () => {
    const s = start({ command: ['sh', '-c', 'trap "" TERM; while :; do sleep 30 & sleep 0.05; done'] });
    await s.started;
    const c = await containerOf(s.run.runId);
    await new Promise((r) => setTimeout(r, 1000));
    const top = await c.top();
    expect(top.Processes.length).toBeGreaterThan(5);
    const t0 = Date.now();
    s.run.kill('cancelled');
    s.run.kill('cancelled'); // idempotent
    const r = await s.run.done;
    const took = Date.now() - t0;
    expect(r.outcome).toBe('cancelled');
    expect(r.reason).toBe('cancelled');
    expect(took).toBeGreaterThanOrEqual(900); // it waited out the grace (1 s)…
    expect(took).toBeLessThan(15_000); // …then killed
    await expect(c.inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('kills an orphaned run at once (no grace), and an orphan request cuts a pending grace short', async () => {
    const slow = executor({ killGraceMs: 20_000 });
    const stubborn = ['sh', '-c', 'trap "" TERM; while :; do sleep 1; done'];
    const a = start({ command: stubborn }, slow);
    await a.started;
    let t0 = Date.now();
    a.run.kill('orphaned');
    const ra = await a.run.done;
    expect(ra.outcome).toBe('lost');
    expect(ra.reason).toBe('lease_stale');
    expect(Date.now() - t0).toBeLessThan(10_000);

    const b = start({ command: stubborn }, slow);
    await b.started;
    t0 = Date.now();
    b.run.kill('cancelled');
    await new Promise((r) => setTimeout(r, 500));
    b.run.kill('orphaned');
    const rb = await b.run.done;
    expect(rb.outcome).toBe('cancelled'); // the first reason stands
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('stops a run at its execution cap: timed_out', async () => {
    const t0 = Date.now();
    const { r } = await run({ command: ['sleep', '60'], capRemainingMs: 1500 });
    expect(r.outcome).toBe('timed_out');
    expect(r.reason).toBe('execution_cap_exceeded');
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('fails clearly when the image is missing under pull policy never', async () => {
    const never = executor({ pullPolicy: 'never' });
    const s = start({ image: 'tsched-test/absent:latest', command: ['true'] }, never);
    const r = await s.run.done;
    expect(r.outcome).toBe('failed');
    expect(r.reason).toBe('image_not_found: tsched-test/absent:latest (pull policy never)');
    expect(r.startedAt).toBeNull();
    expect(s.startedAt()).toBeNull();
    expect(s.sink.text('system')).toContain('image_not_found');
    // The present image runs under `never`.
    expect((await run({ command: ['true'] }, never)).r.outcome).toBe('succeeded');
  });

  it('fails with image_pull_failed when a missing image cannot be pulled (no registry)', async () => {
    const { r } = await run({ image: 'tsched-test/absent-too:latest', command: ['true'] });
    expect(r.outcome).toBe('failed');
    expect(r.reason).toMatch(/^image_pull_failed: tsched-test\/absent-too:latest: ./);
    // `always` pulls even a present image, so with no registry it cannot run.
    const always = await run({ command: ['true'] }, executor({ pullPolicy: 'always' }));
    expect(always.r.outcome).toBe('failed');
    expect(always.r.reason).toMatch(/^image_pull_failed: tsched-test\/busybox:latest: ./);
    expect(always.sink.text('system')).toContain('pulling tsched-test/busybox:latest (pull policy always)');
    const bad = await run({ image: 'Not//A Valid:Ref', command: ['true'] });
    expect(bad.r.outcome).toBe('failed');
    expect(bad.r.reason).toBe('image_invalid: Not//A Valid:Ref: expected a Docker image reference without whitespace');
    const upper = await run({ image: 'NotLowerCase/x', command: ['true'] });
    expect(upper.r.outcome).toBe('failed');
    expect(upper.r.reason).toMatch(/^image_(invalid|pull_failed): NotLowerCase\/x: ./);
  });

  it('cleans up a previous life: kills and removes the containers labelled with its worker name, only those', async () => {
    const mine = `${workerName}-old`;
    const make = (worker: string, runId: string) =>
      docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sleep', '300'], Labels: { [LABEL_WORKER]: worker, [LABEL_RUN]: runId } });
    const a = await make(mine, '999001');
    const b = await make(mine, '999002');
    const other = await make(`${workerName}-other`, '999003');
    await Promise.all([a.start(), other.start()]); // b stays created-not-started: also a leftover
    try {
      expect(await cleanupDockerLeftovers(mine, docker)).toEqual(['999001', '999002']);
      await expect(a.inspect()).rejects.toMatchObject({ statusCode: 404 });
      await expect(b.inspect()).rejects.toMatchObject({ statusCode: 404 });
      expect((await other.inspect()).State.Running).toBe(true);
      expect(await cleanupDockerLeftovers(mine, docker)).toEqual([]);
    } finally {
      await other.remove({ force: true });
    }
  });

  it('never runs privileged, on the host network or with the Docker socket unless the worker allows it', async () => {
    const s = start({ command: ['sleep', '60'], allocation: { cpus: 750, memory: 48 * MiB, ports: [await freePort()], namedPorts: {} } });
    await s.started;
    const info = await (await containerOf(s.run.runId)).inspect();
    const hc = info.HostConfig;
    expect(hc.Privileged).toBe(false);
    expect(hc.NetworkMode).not.toBe('host');
    expect(JSON.stringify(hc.Binds ?? [])).not.toContain('docker.sock');
    expect(JSON.stringify(info.Mounts)).not.toContain('docker.sock');
    expect(hc.SecurityOpt).toContain('no-new-privileges');
    expect(hc.NanoCpus).toBe(750_000_000);
    expect(hc.Memory).toBe(48 * MiB);
    expect(hc.MemorySwap).toBe(48 * MiB);
    expect(hc.PidsLimit).toBe(1024);
    expect(hc.AutoRemove).toBe(false);
    expect(info.Config.Labels).toMatchObject({ 'tsched.run': String(s.run.runId), 'tsched.worker': workerName });
    expect(info.Config.Labels['tsched.task']).toMatch(/^\d+$/);
    s.run.kill('cancelled');
    expect((await s.run.done).outcome).toBe('cancelled');

    // The worker's configuration, not the task, relaxes them.
    const loose = new DockerExecutor({ workerName, workDir, allowPrivileged: true, allowHostNetwork: true, allowDockerSocket: true });
    const spec = loose.containerSpec(
      assignment({ image: TEST_IMAGE, allocation: { cpus: 1000, memory: MiB, ports: [8080], namedPorts: {} } }),
      ['true'],
      [],
    );
    expect(spec.HostConfig?.Privileged).toBe(true);
    expect(spec.HostConfig?.NetworkMode).toBe('host');
    expect(spec.HostConfig?.PortBindings).toEqual({});
    expect(spec.HostConfig?.SecurityOpt).toEqual([]);
    expect(spec.HostConfig?.Binds).toEqual(['/var/run/docker.sock:/var/run/docker.sock']);
    // Docker's floors (0.01 cpus, 6 MiB) apply to tiny allocations instead of a create error.
    expect(spec.HostConfig?.NanoCpus).toBe(1_000_000_000);
    expect(spec.HostConfig?.Memory).toBe(6 * MiB);
    const tiny = loose.containerSpec(
      assignment({ image: TEST_IMAGE, allocation: { cpus: 1, memory: 0, ports: [], namedPorts: {} } }),
      ['true'],
      [],
    );
    expect(tiny.HostConfig?.NanoCpus).toBe(10_000_000);
    expect(tiny.HostConfig?.Memory).toBeUndefined();
    // The socket grant, live (running privileged is not possible inside this sandboxed CI host, so that one
    // is checked on the spec above).
    const p = start({ command: ['sh', '-c', 'test -S /var/run/docker.sock && echo socket'] }, executor({ allowDockerSocket: true }));
    const pr = await p.run.done;
    expect(pr.outcome).toBe('succeeded');
    expect(p.sink.text('stdout')).toBe('socket\n');
  });

  it('a kill before the container starts ends the run without starting it', async () => {
    const s = start({ command: ['sleep', '60'] });
    s.run.kill('shutdown');
    const r = await s.run.done;
    expect(r.outcome).toBe('cancelled');
    expect(r.reason).toBe('worker_drain');
    expect(await containersOf(s.run.runId)).toEqual([]);
  });

  it('fails with container_start_failed when Docker cannot start it (its port is taken on the host)', async () => {
    const port = await freePort();
    const squatter = createServer().listen(port, '0.0.0.0');
    await new Promise((r) => squatter.once('listening', r));
    try {
      const { r, sink } = await run({ command: ['true'], allocation: { cpus: 250, memory: 32 * MiB, ports: [port], namedPorts: {} } });
      expect(r.outcome).toBe('failed');
      expect(r.reason).toMatch(new RegExp(`^container_start_failed: .*${port}`));
      expect(r.startedAt).toBeNull();
      expect(sink.text('system')).toContain('container_start_failed');
    } finally {
      squatter.close();
    }
  });

  it('reports a program missing from the image as exit code 127', async () => {
    const { r, sink } = await run({ command: ['/no/such/program'] });
    expect(r.outcome).toBe('failed');
    expect(r.exitCode).toBe(127);
    expect(sink.text('stderr')).toContain('/no/such/program');
  });

  it('detects the Docker Engine', async () => {
    expect(await dockerAvailable()).toBe(true);
    expect(await dockerAvailable(join(tmpdir(), 'no-such-docker.sock'))).toBe(false);
  });
});

// The long-running commands: `up` (embedded server + local worker), `server` (cluster replica) and
// `worker` (an agent). Their modules are imported only when one of these runs, so the other commands
// start fast. Ctrl-C (SIGINT) or SIGTERM stops them cleanly; a second one forces the exit.

import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseDuration, parseSize } from '../domain/units.js';
import type { ClusterOptions } from '../server/cluster.js';
import type { ServerConfig } from '../server/config.js';
import type { EmbeddedOptions } from '../server/embedded.js';
import type { WorkerOptions } from '../worker/agent.js';
import { describeSource, resolveConfig, writeConfig } from './config.js';
import { UsageError } from './errors.js';

type ExecutorName = 'shell' | 'docker';

// ---- flag parsing shared by the three commands

export function parseCpusFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new UsageError(`${flag}: expected a number of cores > 0 such as 2 or 0.5, got "${v}"`);
  return n;
}

export function parseMemoryFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = parseSize(v);
  if (m === null || m <= 0) throw new UsageError(`${flag}: expected a size such as 4GiB or 512MiB, got "${v}"`);
  return m;
}

export function parsePortFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new UsageError(`${flag}: expected a TCP port from 0 to 65535, got "${v}"`);
  return Number(v);
}

export function parseExecutors(v: string | undefined): ExecutorName[] | undefined {
  if (v === undefined) return undefined;
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const e of list) if (e !== 'shell' && e !== 'docker') throw new UsageError(`--executors: expected shell and/or docker, got "${e}"`);
  if (list.length === 0) throw new UsageError('--executors: expected shell and/or docker');
  return [...new Set(list)] as ExecutorName[];
}

export function parsePortRange(v: string | undefined): { from: number; to: number } | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)-(\d+)$/.exec(v.trim());
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || from < 1 || to > 65535 || from > to)
    throw new UsageError(`--ports: expected a range FROM-TO within 1-65535 such as 20000-20999, got "${v}"`);
  return { from, to };
}

export function parseLabels(v: string | undefined): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const item of v.split(',').filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--labels: expected k=v,k2=v2, got "${item}"`);
    out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return out;
}

/** Resolves when SIGINT or SIGTERM arrives; a second signal exits at once. */
function untilSignal(): Promise<string> {
  return new Promise((resolvePromise) => {
    const onSignal = (sig: string) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const force = () => {
        process.stderr.write('tsched: second signal, exiting now\n');
        process.exit(130);
      };
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      resolvePromise(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** After a clean stop, leave; if a stray handle keeps the loop alive, do not hang forever. */
function exitSoon(): void {
  setTimeout(() => process.exit(process.exitCode ?? 0), 3000).unref();
}

const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);

/** Flags that tune the control plane, shared by `up` and `server`. */
export interface TuningFlags {
  lease?: string;
  capGrace?: string;
  placement?: string;
  urgencyWindow?: string;
  deferralThreshold?: string;
}

function durationFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === null || ms <= 0) throw new UsageError(`${flag}: expected a duration such as 15s, 2m or PT30S, got "${v}"`);
  return ms;
}

export function parseTuning(f: TuningFlags): Partial<ServerConfig> {
  const c: Partial<ServerConfig> = {};
  const lease = durationFlag('--lease', f.lease);
  if (lease !== undefined) {
    if (lease < 1000) throw new UsageError(`--lease: expected at least 1s, got "${f.lease}"`);
    c.leaseMs = lease;
    // Heartbeat often enough that two missed beats still keep the lease.
    c.heartbeatMs = Math.max(200, Math.floor(lease / 5));
  }
  const grace = durationFlag('--cap-grace', f.capGrace);
  if (grace !== undefined) c.capGraceMs = grace;
  if (f.placement !== undefined) {
    if (f.placement !== 'binpack' && f.placement !== 'spread')
      throw new UsageError(`--placement: expected binpack or spread, got "${f.placement}"`);
    c.placement = f.placement;
  }
  const urgency = durationFlag('--urgency-window', f.urgencyWindow);
  if (urgency !== undefined) c.urgencyWindowMs = urgency;
  if (f.deferralThreshold !== undefined) {
    const x = Number(f.deferralThreshold);
    if (!(x > 0 && x <= 1))
      throw new UsageError(`--deferral-threshold: expected a fraction in (0, 1] such as 0.8, got "${f.deferralThreshold}"`);
    c.deferralThreshold = x;
  }
  return c;
}

export interface UpFlags extends TuningFlags {
  port?: string;
  host?: string;
  dataDir?: string;
  cpus?: string;
  memory?: string;
  executors?: string;
  /** commander sets false for --no-local-worker. */
  localWorker?: boolean;
  json?: boolean;
}

export async function runUp(f: UpFlags): Promise<void> {
  const opts: EmbeddedOptions = { dataDir: resolve(f.dataDir ?? './.tsched') };
  const port = parsePortFlag('--port', f.port);
  if (port !== undefined) opts.port = port;
  if (f.host !== undefined) opts.host = f.host;
  const cpus = parseCpusFlag('--cpus', f.cpus);
  if (cpus !== undefined) opts.cpus = cpus;
  const memory = parseMemoryFlag('--memory', f.memory);
  if (memory !== undefined) opts.memory = memory;
  const executors = parseExecutors(f.executors);
  if (executors) opts.executors = executors;
  if (f.localWorker === false) opts.localWorker = false;
  opts.config = parseTuning(f);

  const { startEmbedded } = await import('../server/embedded.js');
  const h = await startEmbedded(opts);
  const cfgPath = writeConfig({ url: h.url, token: h.token });
  if (f.json) {
    out(JSON.stringify({ url: h.url, token: h.token, workerToken: h.workerToken, dataDir: h.dataDir, configPath: cfgPath }));
  } else {
    out(`tsched is up at ${h.url}`);
    out(`  data:         ${h.dataDir}`);
    out(`  token:        ${h.token}`);
    out(`  worker token: ${h.workerToken}   (for remote workers: tsched worker --server ${h.url} --token …)`);
    out(`  CLI config:   ${cfgPath}   (other tsched commands now use this server and token)`);
    out('Try: tsched submit -- echo hello   ·   tsched ls   ·   Ctrl-C stops it.');
  }
  const sig = await untilSignal();
  err(`tsched: ${sig}, stopping…`);
  await h.close();
  err('tsched: stopped');
  exitSoon();
}

export interface ServerFlags extends TuningFlags {
  webhookSecret?: string;
  db?: string;
  adminToken?: string;
  workerToken?: string;
  listen?: string;
  advertiseUrl?: string;
  leaderTtl?: string;
  dbPool?: string;
  statementTimeout?: string;
  json?: boolean;
}

export async function runServer(f: ServerFlags): Promise<void> {
  const db = f.db ?? process.env.TSCHED_DB;
  if (!db) throw new UsageError('--db: expected a PostgreSQL URL such as postgres://user@host:5432/tsched (or set TSCHED_DB)');
  if (!/^postgres(ql)?:\/\//.test(db)) throw new UsageError(`--db: expected a postgres:// URL, got "${db}"`);
  const opts: ClusterOptions = { db, config: parseTuning(f) };
  const ttl = durationFlag('--leader-ttl', f.leaderTtl);
  if (ttl !== undefined) {
    if (ttl < 300) throw new UsageError(`--leader-ttl: expected at least 300ms, got "${f.leaderTtl}"`);
    opts.leaderTtlMs = ttl;
    opts.leaderRenewMs = Math.max(100, Math.floor(ttl / 3));
  }
  if (f.dbPool !== undefined) {
    const n = Number(f.dbPool);
    if (!Number.isInteger(n) || n < 2 || n > 1000)
      throw new UsageError(`--db-pool: expected a whole number from 2 to 1000, got "${f.dbPool}"`);
    opts.maxConnections = n;
  }
  if (f.statementTimeout !== undefined) {
    const st = f.statementTimeout.trim() === '0' ? 0 : durationFlag('--statement-timeout', f.statementTimeout);
    if (st === undefined) throw new UsageError('--statement-timeout: expected a duration such as 30s');
    opts.statementTimeoutMs = st;
  }
  const webhookSecret = f.webhookSecret ?? process.env.TSCHED_WEBHOOK_SECRET;
  if (webhookSecret) opts.webhookSecret = webhookSecret;
  const adminToken = f.adminToken ?? process.env.TSCHED_ADMIN_TOKEN;
  const workerToken = f.workerToken ?? process.env.TSCHED_WORKER_TOKEN;
  if (adminToken) opts.adminToken = adminToken;
  if (workerToken) opts.workerToken = workerToken;
  if (f.listen !== undefined) {
    const m = /^(?:(.*):)?(\d+)$/.exec(f.listen);
    if (!m || Number(m[2]) > 65535) throw new UsageError(`--listen: expected HOST:PORT or PORT such as 0.0.0.0:7420, got "${f.listen}"`);
    opts.listen = f.listen;
    if (m[1]) opts.host = m[1].replace(/^\[|\]$/g, '');
    opts.port = Number(m[2]);
  }
  if (f.advertiseUrl !== undefined) {
    try {
      new URL(f.advertiseUrl);
    } catch {
      throw new UsageError(`--advertise-url: expected a URL such as http://10.0.0.5:7420, got "${f.advertiseUrl}"`);
    }
    opts.advertiseUrl = f.advertiseUrl;
  }
  const { startServer } = await import('../server/cluster.js');
  const h = await startServer(opts);
  if (f.json) out(JSON.stringify({ url: h.url, token: h.token, workerToken: h.workerToken }));
  else {
    out(`tsched server listening at ${h.url} (PostgreSQL store). Ctrl-C stops it.`);
    if (!adminToken) err('tsched: no --admin-token (or TSCHED_ADMIN_TOKEN) given: only tokens already in the database are accepted');
  }
  const sig = await untilSignal();
  err(`tsched: ${sig}, stopping…`);
  await h.close();
  err('tsched: stopped');
  exitSoon();
}

export interface WorkerFlags {
  server?: string;
  token?: string;
  name?: string;
  cpus?: string;
  memory?: string;
  ports?: string;
  labels?: string;
  executors?: string;
  workDir?: string;
  scriptsRoot?: string;
  keepFailed?: boolean;
  runsDir?: string;
  killGrace?: string;
  pullPolicy?: string;
  dockerAllowPrivileged?: boolean;
  dockerAllowHostNetwork?: boolean;
  dockerAllowSocket?: boolean;
  drainTimeout?: string;
  json?: boolean;
}

export async function runWorker(f: WorkerFlags, globals: { server?: string; token?: string }): Promise<void> {
  const cfg = resolveConfig({ server: f.server ?? globals.server, token: f.token ?? globals.token });
  if (!cfg.token) throw new UsageError('--token: a worker needs a token (the worker token `tsched up` prints, or an admin token)');
  const name = f.name ?? hostname();
  const opts: WorkerOptions = {
    server: cfg.url,
    token: cfg.token,
    name,
    workDir: resolve(f.workDir ?? join(tmpdir(), `tsched-worker-${name}`)),
  };
  const cpus = parseCpusFlag('--cpus', f.cpus);
  if (cpus !== undefined) opts.cpus = cpus;
  const memory = parseMemoryFlag('--memory', f.memory);
  if (memory !== undefined) opts.memory = memory;
  const ports = parsePortRange(f.ports);
  if (ports) opts.ports = ports;
  const labels = parseLabels(f.labels);
  if (labels) opts.labels = labels;
  const executors = parseExecutors(f.executors);
  if (executors) opts.executors = executors;
  if (f.scriptsRoot !== undefined) opts.scriptsRoot = resolve(f.scriptsRoot);
  if (f.keepFailed) opts.keepFailedWorkDirs = true;
  if (f.runsDir !== undefined) opts.runsDir = resolve(f.runsDir);
  const killGrace = f.killGrace === undefined ? undefined : parseDuration(f.killGrace);
  if (killGrace === null) throw new UsageError(`--kill-grace: expected a duration such as 10s, got "${f.killGrace}"`);
  if (killGrace !== undefined) opts.killGraceMs = killGrace;
  if (f.pullPolicy !== undefined) {
    if (!['if-not-present', 'always', 'never'].includes(f.pullPolicy))
      throw new UsageError(`--pull-policy: expected if-not-present, always or never, got "${f.pullPolicy}"`);
    opts.docker = { ...opts.docker, pullPolicy: f.pullPolicy as 'if-not-present' | 'always' | 'never' };
  }
  if (f.dockerAllowPrivileged) opts.docker = { ...opts.docker, allowPrivileged: true };
  if (f.dockerAllowHostNetwork) opts.docker = { ...opts.docker, allowHostNetwork: true };
  if (f.dockerAllowSocket) opts.docker = { ...opts.docker, allowDockerSocket: true };
  const drainTimeoutMs = f.drainTimeout === undefined ? 30_000 : Number(f.drainTimeout) * 1000;
  if (!Number.isFinite(drainTimeoutMs) || drainTimeoutMs < 0)
    throw new UsageError(`--drain-timeout: expected seconds ≥ 0, got "${f.drainTimeout}"`);

  const { startWorker } = await import('../worker/agent.js');
  const h = await startWorker(opts);
  if (f.json) out(JSON.stringify({ name, server: cfg.url, workDir: opts.workDir }));
  else
    out(
      `tsched worker ${name} connected to ${cfg.url} (server from ${describeSource(cfg.urlSource, 'url', cfg.configPath)}). Ctrl-C drains and stops it.`,
    );
  const sig = await untilSignal();
  err(`tsched: ${sig}, draining (up to ${drainTimeoutMs / 1000}s; a second Ctrl-C exits at once)…`);
  await h.stop({ drainTimeoutMs });
  err('tsched: worker stopped');
  exitSoon();
}

// Server configuration: validated and frozen at start (like fastify's own config), so that a typo fails
// fast with a message naming the setting instead of misbehaving later.

import type { Category, Shape } from '../domain/resources.js';
import { DEFAULT_CATEGORY_SHAPES } from '../domain/resources.js';
import type { SpecDefaults } from '../domain/task-spec.js';
import { DEFAULT_SPEC_DEFAULTS } from '../domain/task-spec.js';

export interface ServerConfig {
  /** Lease of a run before its worker first heartbeats, and silence after which a worker is lost (ms). */
  leaseMs: number;
  /** How often workers should heartbeat (ms). */
  heartbeatMs: number;
  /** Grace the server allows past a run's execution cap before ending it itself (ms). */
  capGraceMs: number;
  /** How often the monitor looks for lost workers and runs past their cap (ms). */
  monitorIntervalMs: number;
  /** Slow fallback for scheduling passes; passes are mostly triggered by events (ms). */
  schedulerIntervalMs: number;
  /** Most candidates one scheduling pass considers. */
  schedulerBatch: number;
  /** A task whose start deadline is this close is promoted to the urgent band (ms). */
  urgencyWindowMs: number;
  /** Cluster utilization above which delayable work is deferred (0–1). */
  deferralThreshold: number;
  deferralSlackMs: number;
  /** Longest deferral holds a task past its due time (ms). */
  deferralMaxHoldMs: number;
  /** How long after its start deadline a late task ranks behind in-time tasks of its band (ms; 0: off). */
  lateDemotionMs: number;
  placement: 'binpack' | 'spread';
  quotas: Record<string, { cpus?: number; memory?: number }>;
  /** Longest a worker poll may wait (ms). */
  maxPollWaitMs: number;
  /** Per-run log cap (bytes). */
  maxLogBytesPerRun: number;
  /** Request body limit (bytes): bigger bodies get 413. */
  bodyLimit: number;
  /** Requests per minute per token on the task API. Worker endpoints are not limited. */
  rateLimitPerMinute: number;
  categoryShapes: Record<Category, Shape>;
  spec: SpecDefaults;
  /** HMAC secret for webhook signatures. */
  webhookSecret: string;
}

export const DEFAULT_SERVER_CONFIG: ServerConfig = {
  leaseMs: 15_000,
  heartbeatMs: 3_000,
  capGraceMs: 15_000,
  monitorIntervalMs: 1_000,
  schedulerIntervalMs: 1_000,
  schedulerBatch: 2_000,
  urgencyWindowMs: 60_000,
  deferralThreshold: 0.8,
  deferralSlackMs: 10 * 60_000,
  deferralMaxHoldMs: 60_000,
  lateDemotionMs: 10 * 60_000,
  placement: 'binpack',
  quotas: {},
  maxPollWaitMs: 30_000,
  maxLogBytesPerRun: 10 * 1024 * 1024,
  bodyLimit: 8 * 1024 * 1024,
  rateLimitPerMinute: 60_000,
  categoryShapes: { ...DEFAULT_CATEGORY_SHAPES },
  spec: DEFAULT_SPEC_DEFAULTS,
  webhookSecret: '',
};

export function resolveConfig(overrides: Partial<ServerConfig> = {}): Readonly<ServerConfig> {
  const c: ServerConfig = { ...DEFAULT_SERVER_CONFIG, ...overrides };
  const positive: Array<keyof ServerConfig> = [
    'leaseMs',
    'heartbeatMs',
    'capGraceMs',
    'monitorIntervalMs',
    'schedulerIntervalMs',
    'schedulerBatch',
    'maxPollWaitMs',
    'maxLogBytesPerRun',
    'bodyLimit',
    'rateLimitPerMinute',
  ];
  for (const k of positive) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      throw new Error(`config ${k}: expected a positive number, got ${String(v)}`);
  }
  if (c.heartbeatMs >= c.leaseMs) throw new Error('config heartbeatMs: expected less than leaseMs');
  if (!(c.deferralThreshold > 0 && c.deferralThreshold <= 1)) throw new Error('config deferralThreshold: expected a fraction in (0, 1]');
  c.spec = { ...c.spec, categoryShapes: c.categoryShapes };
  return Object.freeze(c);
}

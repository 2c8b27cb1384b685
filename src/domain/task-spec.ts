// Turning what a user wrote (API body or manifest) into a NewTask: semantic validation with messages that
// name the field and what was expected. Structural checks (types, unknown fields) happen first, in the
// TypeBox schema of src/protocol; this module checks meaning. Pure.

import type { FieldIssue } from './errors.js';
import { validationError } from './errors.js';
import { parsePriority } from './priority.js';
import { validateSchedule } from './recurrence.js';
import type { Category, ResourceRequest, Shape } from './resources.js';
import { CATEGORIES, DEFAULT_CATEGORY_SHAPES } from './resources.js';
import type { DeadlineMissPolicy, Executor, NewTask, OverlapPolicy, Placement, ScheduleSpec, SchedulingType } from './task.js';
import { DEFAULT_RETRY, EXECUTORS, SCHEDULING_TYPES } from './task.js';
import { parseDuration, parseSize } from './units.js';

/** The task fields a user may send. Durations take "90s"/"15m"/ISO-8601 or ms; sizes "512Mi"/"2GiB" or bytes. */
export interface TaskInput {
  name?: string;
  command?: string[];
  shell?: boolean;
  script?: string;
  scriptPath?: string;
  image?: string;
  executor?: Executor;
  env?: Record<string, string>;
  resources?: {
    category?: Category;
    cpus?: number;
    memory?: string | number;
    ports?: number;
    portNames?: string[];
  };
  constraints?: Record<string, string>;
  labels?: Record<string, string>;
  priority?: string | number;
  delayTolerance?: string | number;
  executionCap?: string | number;
  totalAttempts?: number;
  retry?: { backoff?: string | number; maxDelay?: string | number; noRetryExitCodes?: number[] };
  schedulingType?: SchedulingType;
  schedule?: {
    type: SchedulingType;
    at?: string;
    on?: string | number | Array<string | number>;
    cron?: string;
    timezone?: string;
    startAt?: string | number;
    endAt?: string | number;
    maxOccurrences?: number;
    overlap?: OverlapPolicy;
  };
  /** Delay the (single) execution until this instant: ISO-8601 or epoch ms. */
  startAt?: string | number;
  placement?: Placement;
  notify?: { url: string; events?: string[] };
  onDeadlineMiss?: DeadlineMissPolicy;
}

export interface SpecDefaults {
  categoryShapes: Record<Category, Shape>;
  executionCap: number;
  delayTolerance: number;
  totalAttempts: number;
  /** Upper bounds that catch typos like "10000d". */
  maxExecutionCap: number;
  maxAttempts: number;
}

export const DEFAULT_SPEC_DEFAULTS: SpecDefaults = Object.freeze({
  categoryShapes: DEFAULT_CATEGORY_SHAPES as Record<Category, Shape>,
  executionCap: 3_600_000,
  delayTolerance: 3_600_000,
  totalAttempts: 3,
  maxExecutionCap: 30 * 86_400_000,
  maxAttempts: 100,
});

const PORT_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function parseInstant(v: string | number): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : null;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t;
}

/**
 * Validates and normalises one task. Throws VALIDATION_FAILED listing every problem found.
 * `prefix` is prepended to paths (e.g. "tasks[3].") for batch submits.
 */
export function normalizeTask(input: TaskInput, defaults: SpecDefaults = DEFAULT_SPEC_DEFAULTS, prefix = ''): NewTask {
  const issues: FieldIssue[] = [];
  const bad = (path: string, message: string) => issues.push({ path: prefix + path, message });

  // What to run: exactly one of command, script, scriptPath.
  const command = input.command ?? [];
  const sources = [command.length > 0, input.script !== undefined, input.scriptPath !== undefined].filter(Boolean).length;
  if (sources === 0) bad('command', 'expected a non-empty argv array, or a script, or a scriptPath');
  if (sources > 1) bad('command', 'expected only one of command, script and scriptPath');
  if (input.command && input.command.length === 0) bad('command', 'expected a non-empty argv array');
  if (command.some((a) => a.includes('\0'))) bad('command', 'arguments must not contain NUL bytes');
  if (input.scriptPath !== undefined) {
    const p = input.scriptPath;
    if (p === '' || p.includes('\0')) bad('scriptPath', 'expected a relative path without NUL bytes');
    else if (p.startsWith('/')) bad('scriptPath', 'expected a path relative to the worker scripts root, not an absolute path');
    else if (p.split(/[\\/]/).includes('..')) bad('scriptPath', 'expected a path inside the scripts root; ".." is not allowed');
  }
  if (input.script !== undefined && input.script.trim() === '') bad('script', 'expected a non-empty script');

  const executor: Executor = input.executor ?? (input.image ? 'docker' : 'shell');
  if (!EXECUTORS.includes(executor)) bad('executor', `expected one of ${EXECUTORS.join(', ')}`);
  if (executor === 'docker' && !input.image) bad('image', 'expected a Docker image for the docker executor');
  if (executor === 'shell' && input.image) bad('executor', 'an image needs the docker executor; remove executor or set it to "docker"');

  for (const k of Object.keys(input.env ?? {})) if (!ENV_NAME.test(k)) bad(`env.${k}`, 'expected a variable name of letters, digits and _');

  // Resources: a category, or explicit values (explicit values override the category's).
  const r = input.resources ?? {};
  let resources: ResourceRequest = { category: null, cpus: 0, memory: 0, ports: 0, portNames: [] };
  const category: Category = r.category ?? 'basic';
  if (r.category !== undefined && !CATEGORIES.includes(r.category)) bad('resources.category', `expected one of ${CATEGORIES.join(', ')}`);
  const shape = defaults.categoryShapes[category] ?? DEFAULT_CATEGORY_SHAPES.basic;
  resources.category = r.cpus === undefined && r.memory === undefined ? category : (r.category ?? null);
  resources.cpus = shape.cpus;
  resources.memory = shape.memory;
  if (r.cpus !== undefined) {
    if (!(typeof r.cpus === 'number' && Number.isFinite(r.cpus) && r.cpus > 0 && r.cpus <= 1024))
      bad('resources.cpus', 'expected a number of cores > 0, e.g. 0.5 or 2');
    else resources.cpus = Math.max(1, Math.round(r.cpus * 1000));
  }
  if (r.memory !== undefined) {
    const m = parseSize(r.memory);
    if (m === null || m <= 0) bad('resources.memory', 'expected a size > 0 such as "512Mi", "2GiB" or "1.5G"');
    else resources.memory = m;
  }
  if (r.ports !== undefined && !(Number.isInteger(r.ports) && r.ports >= 0 && r.ports <= 64))
    bad('resources.ports', 'expected an integer from 0 to 64');
  else resources.ports = r.ports ?? 0;
  const portNames = r.portNames ?? [];
  portNames.forEach((n, i) => {
    if (!PORT_NAME.test(n)) bad(`resources.portNames[${i}]`, 'expected a name of letters, digits and _, starting with a letter');
  });
  if (new Set(portNames.map((n) => n.toUpperCase())).size !== portNames.length) bad('resources.portNames', 'expected distinct names');
  resources.portNames = portNames;
  resources = { ...resources };

  let priority = 50;
  if (input.priority !== undefined) {
    const p = parsePriority(input.priority);
    if (p === null) bad('priority', 'expected urgent, high, normal, low or an integer from 0 to 100');
    else priority = p;
  }

  const duration = (path: string, v: string | number | undefined, def: number, opts: { min?: number; max?: number } = {}): number => {
    if (v === undefined) return def;
    const d = parseDuration(v);
    if (d === null) {
      bad(path, 'expected a duration such as "90s", "15m", "2h", "1d" or ISO-8601 "PT15M"');
      return def;
    }
    if (opts.min !== undefined && d < opts.min) bad(path, `expected at least ${opts.min}ms`);
    if (opts.max !== undefined && d > opts.max) bad(path, `expected at most ${Math.round(opts.max / 86_400_000)}d`);
    return d;
  };
  const executionCap = duration('executionCap', input.executionCap, defaults.executionCap, { min: 1, max: defaults.maxExecutionCap });
  const delayTolerance = duration('delayTolerance', input.delayTolerance, defaults.delayTolerance, { max: 366 * 86_400_000 });

  let totalAttempts = defaults.totalAttempts;
  if (input.totalAttempts !== undefined) {
    if (!(Number.isInteger(input.totalAttempts) && input.totalAttempts >= 1 && input.totalAttempts <= defaults.maxAttempts))
      bad('totalAttempts', `expected an integer from 1 to ${defaults.maxAttempts} (the first execution included)`);
    else totalAttempts = input.totalAttempts;
  }

  const retry = {
    backoff: duration('retry.backoff', input.retry?.backoff, DEFAULT_RETRY.backoff),
    maxDelay: duration('retry.maxDelay', input.retry?.maxDelay, DEFAULT_RETRY.maxDelay),
    noRetryExitCodes: input.retry?.noRetryExitCodes ?? [],
  };
  retry.noRetryExitCodes.forEach((c, i) => {
    if (!(Number.isInteger(c) && c >= 0 && c <= 255)) bad(`retry.noRetryExitCodes[${i}]`, 'expected an exit code from 0 to 255');
  });

  let schedule: ScheduleSpec | null = null;
  const schedulingType: SchedulingType = input.schedule?.type ?? input.schedulingType ?? 'once';
  if (!SCHEDULING_TYPES.includes(schedulingType)) bad('schedulingType', `expected one of ${SCHEDULING_TYPES.join(', ')}`);
  if (input.schedulingType && input.schedule && input.schedulingType !== input.schedule.type)
    bad('schedulingType', `expected the same type as schedule.type (${input.schedule.type})`);
  if (input.schedule) {
    const s = input.schedule;
    const startAt = s.startAt === undefined ? undefined : parseInstant(s.startAt);
    const endAt = s.endAt === undefined ? undefined : parseInstant(s.endAt);
    if (startAt === null) bad('schedule.startAt', 'expected an ISO-8601 instant or epoch milliseconds');
    if (endAt === null) bad('schedule.endAt', 'expected an ISO-8601 instant or epoch milliseconds');
    if (s.maxOccurrences !== undefined && !(Number.isInteger(s.maxOccurrences) && s.maxOccurrences >= 1))
      bad('schedule.maxOccurrences', 'expected an integer ≥ 1');
    if (s.type === 'cron' && !s.cron) bad('schedule.cron', 'expected a cron expression for type cron');
    if (s.type !== 'cron' && s.cron) bad('schedule.cron', 'only allowed with type cron');
    if (s.at !== undefined && !/^([01]\d|2[0-3]):[0-5]\d$/.test(s.at)) bad('schedule.at', 'expected a local time "HH:MM" (24-hour)');
    const timezone = s.timezone ?? 'UTC';
    if (!isValidZone(timezone)) bad('schedule.timezone', 'expected an IANA time zone such as "Europe/London"');
    schedule = {
      type: s.type,
      timezone,
      overlap: s.overlap ?? 'skip',
      ...(s.at !== undefined ? { at: s.at } : {}),
      ...(s.on !== undefined ? { on: s.on } : {}),
      ...(s.cron !== undefined ? { cron: s.cron } : {}),
      ...(typeof startAt === 'number' ? { startAt } : {}),
      ...(typeof endAt === 'number' ? { endAt } : {}),
      ...(s.maxOccurrences !== undefined ? { maxOccurrences: s.maxOccurrences } : {}),
    };
    // The schedule's meaning (on per type, cron syntax, startAt < endAt); one issue per path, the checks above first.
    for (const i of validateSchedule(schedule)) if (!issues.some((x) => x.path === prefix + i.path)) bad(i.path, i.message);
  } else if (schedulingType !== 'once') {
    bad('schedule', `expected a schedule object for schedulingType ${schedulingType}`);
  }

  let dueAt: number | null = null;
  if (input.startAt !== undefined) {
    const t = parseInstant(input.startAt);
    if (t === null) bad('startAt', 'expected an ISO-8601 instant or epoch milliseconds');
    else dueAt = t;
  } else if (schedule?.type === 'once' && schedule.startAt !== undefined) {
    dueAt = schedule.startAt;
  }

  if (input.notify) {
    try {
      const u = new URL(input.notify.url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') bad('notify.url', 'expected an http or https URL');
    } catch {
      bad('notify.url', 'expected an absolute http or https URL');
    }
  }

  const name = input.name ?? deriveName(input);
  if (name.length > 200) bad('name', 'expected at most 200 characters');

  if (issues.length > 0) throw validationError(issues);
  return {
    name,
    command,
    shell: input.shell ?? false,
    script: input.script ?? null,
    scriptPath: input.scriptPath ?? null,
    image: input.image ?? null,
    executor,
    env: input.env ?? {},
    resources,
    constraints: input.constraints ?? {},
    labels: input.labels ?? {},
    priority,
    delayTolerance,
    executionCap,
    totalAttempts,
    retry,
    schedulingType,
    schedule,
    placement: input.placement ?? null,
    notify: input.notify ? { url: input.notify.url, events: input.notify.events ?? ['task.deadline_missed', 'task.failed'] } : null,
    onDeadlineMiss: input.onDeadlineMiss ?? 'run',
    dueAt,
    parentId: null,
    occurrenceAt: null,
  };
}

function deriveName(input: TaskInput): string {
  if (input.command && input.command.length > 0) return input.command.join(' ').slice(0, 80);
  if (input.scriptPath) return input.scriptPath.slice(0, 80);
  if (input.script) return 'inline script';
  return 'task';
}

export function isValidZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

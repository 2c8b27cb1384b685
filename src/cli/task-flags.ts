// `tsched submit` flags → a TaskInput (the API's body). Every flag is checked here and a bad value is
// reported with the flag's name before anything is sent; normalizeTask then checks the whole task.

import { readFileSync } from 'node:fs';
import { parsePriority } from '../domain/priority.js';
import { CATEGORIES, type Category } from '../domain/resources.js';
import { SCHEDULING_TYPES, type SchedulingType } from '../domain/task.js';
import type { TaskInput } from '../domain/task-spec.js';
import { parseDuration, parseSize } from '../domain/units.js';
import { UsageError } from './errors.js';

/** The flags as commander hands them over (strings; repeatable flags as arrays). */
export interface SubmitFlags {
  name?: string;
  cpus?: string;
  memory?: string;
  ports?: string;
  portName?: string[];
  category?: string;
  attempts?: string;
  cap?: string;
  delayTolerance?: string;
  tolerance?: string;
  priority?: string;
  image?: string;
  env?: string[];
  label?: string[];
  constraint?: string[];
  shell?: boolean;
  script?: string;
  scriptPath?: string;
  startAt?: string;
  schedule?: string;
  at?: string;
  on?: string;
  cron?: string;
  timezone?: string;
  /** commander's shape for `--no-retry-exit-code <n>`: true when absent, else the values. */
  retryExitCode?: boolean | string[];
}

export interface FlagIO {
  readFile(path: string): string;
}

const defaultIO: FlagIO = { readFile: (p) => readFileSync(p, 'utf8') };

function fail(flag: string, message: string): never {
  throw new UsageError(`${flag}: ${message}`);
}

function integer(flag: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) fail(flag, `expected an integer from ${min} to ${max}, got "${v}"`);
  return Number(v);
}

function duration(flag: string, v: string): string {
  if (parseDuration(v) === null) fail(flag, `expected a duration such as 90s, 15m, 2h, 1d or PT15M, got "${v}"`);
  return v;
}

function pairs(flag: string, values: string[] | undefined, keyPattern?: RegExp): Record<string, string> | undefined {
  if (!values || values.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const raw of values) {
    for (const item of flag === '--env' ? [raw] : raw.split(',')) {
      const eq = item.indexOf('=');
      if (eq <= 0) fail(flag, `expected KEY=VALUE, got "${item}"`);
      const key = item.slice(0, eq);
      if (keyPattern && !keyPattern.test(key))
        fail(flag, `"${key}" is not a valid name (letters, digits and _, not starting with a digit)`);
      out[key] = item.slice(eq + 1);
    }
  }
  return out;
}

/** Turns `--on mon,wed` / `--on 15` / `--on last` / `--on 12-25` into the schedule's `on`. */
function parseOn(v: string): string | number | Array<string | number> {
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s.toLowerCase()));
  if (items.length === 0) fail('--on', 'expected weekdays (mon,wed), a day of the month (15 or last) or MM-DD');
  return items.length === 1 ? (items[0] as string | number) : items;
}

export function taskFromFlags(command: string[], f: SubmitFlags, io: FlagIO = defaultIO): TaskInput {
  const t: TaskInput = {};
  if (f.name !== undefined) t.name = f.name;

  // What to run.
  const sources = [command.length > 0 ? 'a command' : null, f.script ? '--script' : null, f.scriptPath ? '--script-path' : null].filter(
    Boolean,
  );
  if (sources.length === 0)
    throw new UsageError('nothing to run: give a command after --, or --script FILE, or --script-path PATH (or a manifest with -f)');
  if (sources.length > 1) throw new UsageError(`give only one of a command, --script and --script-path (got ${sources.join(' and ')})`);
  if (command.length > 0) t.command = command;
  if (f.script) {
    try {
      t.script = io.readFile(f.script);
    } catch (err) {
      fail(
        '--script',
        `cannot read ${f.script}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      );
    }
  }
  if (f.scriptPath) t.scriptPath = f.scriptPath;
  if (f.shell) {
    if (command.length === 0) fail('--shell', 'needs a command to run through /bin/sh -c');
    t.shell = true;
  }
  if (f.image) t.image = f.image;

  const env = pairs('--env', f.env, /^[A-Za-z_][A-Za-z0-9_]*$/);
  if (env) t.env = env;
  const labels = pairs('--label', f.label);
  if (labels) t.labels = labels;
  const constraints = pairs('--constraint', f.constraint);
  if (constraints) t.constraints = constraints;

  // Resources.
  const r: NonNullable<TaskInput['resources']> = {};
  if (f.category !== undefined) {
    const c = f.category.toLowerCase();
    if (!CATEGORIES.includes(c as Category)) fail('--category', `expected one of ${CATEGORIES.join(', ')}, got "${f.category}"`);
    r.category = c as Category;
  }
  if (f.cpus !== undefined) {
    const n = Number(f.cpus);
    if (f.cpus.trim() === '' || !Number.isFinite(n) || n <= 0)
      fail('--cpus', `expected a number of cores > 0 such as 0.5 or 2, got "${f.cpus}"`);
    r.cpus = n;
  }
  if (f.memory !== undefined) {
    const m = parseSize(f.memory);
    if (m === null || m <= 0) fail('--memory', `expected a size such as 512MiB, 1GiB or 1.5G, got "${f.memory}"`);
    r.memory = f.memory;
  }
  if (f.ports !== undefined) r.ports = integer('--ports', f.ports, 0, 64);
  if (f.portName && f.portName.length > 0) r.portNames = f.portName.flatMap((p) => p.split(',')).filter(Boolean);
  if (Object.keys(r).length > 0) t.resources = r;

  if (f.priority !== undefined) {
    if (parsePriority(f.priority) === null)
      fail('--priority', `expected urgent, high, normal, low or an integer from 0 to 100, got "${f.priority}"`);
    const asNumber = /^\d+$/.test(f.priority.trim());
    t.priority = asNumber ? Number(f.priority) : f.priority.trim().toLowerCase();
  }
  if (f.attempts !== undefined) t.totalAttempts = integer('--attempts', f.attempts, 1, 100);
  if (f.cap !== undefined) t.executionCap = duration('--cap', f.cap);
  const tolerance = f.delayTolerance ?? f.tolerance;
  if (tolerance !== undefined) t.delayTolerance = duration(f.delayTolerance !== undefined ? '--delay-tolerance' : '--tolerance', tolerance);
  if (Array.isArray(f.retryExitCode)) {
    t.retry = { noRetryExitCodes: f.retryExitCode.flatMap((v) => v.split(',')).map((v) => integer('--no-retry-exit-code', v, 0, 255)) };
  }

  // When.
  if (f.startAt !== undefined) {
    if (Number.isNaN(Date.parse(f.startAt)))
      fail('--start-at', `expected an ISO-8601 instant such as 2030-01-01T09:00:00Z, got "${f.startAt}"`);
    if (f.schedule === undefined && f.cron === undefined) t.startAt = f.startAt;
  }
  const type = (f.schedule?.toLowerCase() ?? (f.cron !== undefined ? 'cron' : undefined)) as SchedulingType | undefined;
  if (type !== undefined) {
    if (!SCHEDULING_TYPES.includes(type)) fail('--schedule', `expected one of ${SCHEDULING_TYPES.join(', ')}, got "${f.schedule}"`);
    if (type === 'cron' && f.cron === undefined) fail('--cron', 'a cron schedule needs --cron "EXPR", e.g. --cron "*/5 * * * *"');
    if (type !== 'cron' && f.cron !== undefined) fail('--cron', `only goes with --schedule cron (not ${type})`);
    if (f.at !== undefined && !/^([01]\d|2[0-3]):[0-5]\d$/.test(f.at)) fail('--at', `expected a local time HH:MM (24-hour), got "${f.at}"`);
    const s: NonNullable<TaskInput['schedule']> = { type };
    if (f.at !== undefined) s.at = f.at;
    if (f.on !== undefined) s.on = parseOn(f.on);
    if (f.cron !== undefined) s.cron = f.cron;
    if (f.timezone !== undefined) s.timezone = f.timezone;
    if (f.startAt !== undefined) s.startAt = f.startAt;
    t.schedule = s;
  } else {
    for (const [flag, v] of [
      ['--at', f.at],
      ['--on', f.on],
      ['--timezone', f.timezone],
    ] as const)
      if (v !== undefined) fail(flag, 'only goes with --schedule daily|weekly|monthly|annually|cron');
  }
  return t;
}

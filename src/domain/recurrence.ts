// Schedule recurrence: turns a ScheduleSpec into occurrence instants (epoch ms). Pure: no I/O, no clock —
// `after`/`now` are passed in. Calendar and zone arithmetic is luxon's, cron matching is croner's; this
// module only decides which local dates match and which instant a local wall time maps to.
//
// Calendar rules (the issue's floor):
// - monthly on 29–31 runs on the last day of shorter months; "last" is always the last day;
// - annually on 02-29 runs on Feb 28 in common years;
// - a local time that does not exist (spring forward) runs at the first valid instant after the gap;
// - a local time that occurs twice (fall back) runs once, at its first occurrence.

import { Cron } from 'croner';
import { DateTime, IANAZone } from 'luxon';
import type { FieldIssue } from './errors.js';
import { validationError } from './errors.js';
import type { ScheduleSpec, SchedulingType } from './task.js';
import { SCHEDULING_TYPES } from './task.js';

const OVERLAPS = ['skip', 'queue', 'allow', 'replace'];
const AT = /^([01]\d|2[0-3]):([0-5]\d)$/;
const WEEKDAYS: Record<string, number> = {
  mon: 1,
  monday: 1,
  tue: 2,
  tues: 2,
  tuesday: 2,
  wed: 3,
  wednesday: 3,
  thu: 4,
  thur: 4,
  thurs: 4,
  thursday: 4,
  fri: 5,
  friday: 5,
  sat: 6,
  saturday: 6,
  sun: 7,
  sunday: 7,
};
const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;

/** A spec parsed once: what the iterators need. */
interface Compiled {
  type: SchedulingType;
  zone: string;
  hour: number;
  minute: number;
  weekdays: Set<number>; // weekly: luxon weekday 1 = Mon … 7 = Sun
  monthDays: Array<number | 'last'>; // monthly
  yearDays: Array<{ month: number; day: number }>; // annually, sorted
  cron: Cron | null;
  startAt: number | undefined;
  endAt: number | undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing and validation

/** `on` as a list of tokens: arrays, comma strings and single values all become trimmed strings. */
function onTokens(on: ScheduleSpec['on']): string[] {
  if (on === undefined) return [];
  const items = Array.isArray(on) ? on : [on];
  return items.flatMap((v) => (typeof v === 'number' ? [String(v)] : String(v).split(','))).map((s) => s.trim().toLowerCase());
}

function parseWeekday(tok: string): number | null {
  if (/^[1-7]$/.test(tok)) return Number(tok);
  return WEEKDAYS[tok] ?? null;
}

/** weekly `on`: names, 1–7 (Mon–Sun) and ranges such as "mon-fri" (a range may wrap: "fri-mon"). */
function parseWeekdays(on: ScheduleSpec['on']): { days: Set<number>; bad: string[] } {
  const days = new Set<number>();
  const bad: string[] = [];
  for (const tok of onTokens(on)) {
    const range = tok.split('-');
    if (range.length === 2) {
      const a = parseWeekday(range[0].trim());
      const b = parseWeekday(range[1].trim());
      if (a === null || b === null) bad.push(tok);
      else {
        let d = a;
        days.add(d);
        while (d !== b) {
          d = (d % 7) + 1;
          days.add(d);
        }
      }
      continue;
    }
    const d = parseWeekday(tok);
    if (d === null) bad.push(tok);
    else days.add(d);
  }
  return { days, bad };
}

function parseMonthDays(on: ScheduleSpec['on']): { days: Array<number | 'last'>; bad: string[] } {
  const days: Array<number | 'last'> = [];
  const bad: string[] = [];
  for (const tok of onTokens(on)) {
    if (tok === 'last') days.push('last');
    else if (/^\d{1,2}$/.test(tok) && Number(tok) >= 1 && Number(tok) <= 31) days.push(Number(tok));
    else bad.push(tok);
  }
  return { days, bad };
}

// Days each month can have at most (February 29 in leap years).
const MAX_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function parseYearDays(on: ScheduleSpec['on']): { days: Array<{ month: number; day: number }>; bad: string[] } {
  const days: Array<{ month: number; day: number }> = [];
  const bad: string[] = [];
  for (const tok of onTokens(on)) {
    const m = /^(\d{2})-(\d{2})$/.exec(tok);
    const month = m ? Number(m[1]) : 0;
    const day = m ? Number(m[2]) : 0;
    if (month >= 1 && month <= 12 && day >= 1 && day <= MAX_DAYS[month - 1]) days.push({ month, day });
    else bad.push(tok);
  }
  days.sort((a, b) => a.month - b.month || a.day - b.day);
  return { days, bad };
}

function makeCron(expr: string, zone: string): Cron {
  // fixedTimeRule "no-wildcard": any job without * or a step in sec/min/hour (e.g. "30 1,2 * * *") is a
  // fixed-time job, so a repeated local time runs once and a skipped one runs after the gap — our rules.
  // Interval jobs ("*/5 * * * *") keep croner's real-time behaviour: they run through a repeated hour and
  // skip the times in a gap (those times do not exist). croner 11 documents and we test both.
  // utcOffset 0 for UTC: the same instants, ~10x faster than Intl-based zone lookups.
  const utc = zone === 'UTC' || zone === 'Etc/UTC';
  return new Cron(expr.trim(), {
    paused: true,
    mode: '5-or-6-parts',
    fixedTimeRule: 'no-wildcard',
    ...(utc ? { utcOffset: 0 } : { timezone: zone }),
  });
}

function isInstant(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

/**
 * Semantic checks of a schedule. Paths are prefixed `schedule.`; messages name what was expected.
 * Returns [] when the spec can be expanded by the functions below.
 */
export function validateSchedule(spec: ScheduleSpec): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const bad = (field: string, message: string) => issues.push({ path: `schedule.${field}`, message });
  const type = spec.type;
  if (!SCHEDULING_TYPES.includes(type)) {
    bad('type', `expected one of ${SCHEDULING_TYPES.join(', ')}`);
    return issues;
  }
  const zone = spec.timezone ?? 'UTC';
  if (typeof zone !== 'string' || !IANAZone.isValidZone(zone))
    bad('timezone', 'expected an IANA time zone such as "Europe/London" or "UTC"');

  const calendar = type === 'daily' || type === 'weekly' || type === 'monthly' || type === 'annually';
  if (spec.at !== undefined) {
    if (!calendar)
      bad(
        'at',
        `only allowed with daily, weekly, monthly or annually (type ${type} ${type === 'cron' ? 'sets the time in cron' : 'uses startAt'})`,
      );
    else if (typeof spec.at !== 'string' || !AT.test(spec.at)) bad('at', 'expected a local time "HH:MM" (24-hour), e.g. "02:30"');
  }

  if (type === 'weekly') {
    const { days, bad: wrong } = parseWeekdays(spec.on);
    if (spec.on === undefined || (days.size === 0 && wrong.length === 0))
      bad('on', 'expected weekdays for type weekly, e.g. ["mon","wed","fri"], "mon-fri" or 1–7 (Mon–Sun)');
    else if (wrong.length > 0)
      bad('on', `expected weekday names mon..sun or numbers 1–7 (Mon–Sun); got ${wrong.map((w) => JSON.stringify(w)).join(', ')}`);
  } else if (type === 'monthly') {
    const { days, bad: wrong } = parseMonthDays(spec.on);
    if (spec.on === undefined || (days.length === 0 && wrong.length === 0))
      bad('on', 'expected a day of month for type monthly: 1–31 or "last" (a list is allowed)');
    else if (wrong.length > 0) bad('on', `expected days of month 1–31 or "last"; got ${wrong.map((w) => JSON.stringify(w)).join(', ')}`);
  } else if (type === 'annually') {
    const { days, bad: wrong } = parseYearDays(spec.on);
    if (spec.on === undefined || (days.length === 0 && wrong.length === 0))
      bad('on', 'expected a month and day "MM-DD" for type annually, e.g. "02-29"');
    else if (wrong.length > 0)
      bad(
        'on',
        `expected dates "MM-DD" that exist in some year (e.g. "12-31", "02-29"); got ${wrong.map((w) => JSON.stringify(w)).join(', ')}`,
      );
  } else if (spec.on !== undefined) {
    bad('on', `only allowed with weekly, monthly or annually (type ${type} has no "on")`);
  }

  if (type === 'cron') {
    const expr = spec.cron;
    if (typeof expr !== 'string' || expr.trim() === '') bad('cron', 'expected a cron expression for type cron, e.g. "0 9 * * 1-5"');
    else {
      const fields = expr.trim().split(/\s+/).length;
      if (fields !== 5 && fields !== 6)
        bad('cron', `expected 5 fields (min hour day month weekday) or 6 with seconds first; got ${fields}`);
      else {
        try {
          const c = makeCron(expr, 'UTC');
          // A pattern such as "0 0 30 2 *" parses but never fires; say so now rather than never run.
          if (c.nextRun(new Date(0)) === null) bad('cron', `expected an expression that matches some instant; "${expr}" never does`);
        } catch (e) {
          bad('cron', `expected a valid cron expression: ${(e as Error).message}`);
        }
      }
    }
  } else if (spec.cron !== undefined) {
    bad('cron', 'only allowed with type cron');
  }

  if (spec.startAt !== undefined && !isInstant(spec.startAt)) bad('startAt', 'expected an instant (epoch ms ≥ 0)');
  if (spec.endAt !== undefined && !isInstant(spec.endAt)) bad('endAt', 'expected an instant (epoch ms ≥ 0)');
  if (isInstant(spec.startAt) && isInstant(spec.endAt) && !(spec.startAt < spec.endAt)) bad('endAt', 'expected endAt after startAt');
  if (spec.maxOccurrences !== undefined && !(Number.isInteger(spec.maxOccurrences) && spec.maxOccurrences >= 1))
    bad('maxOccurrences', 'expected an integer ≥ 1');
  if (spec.overlap !== undefined && !OVERLAPS.includes(spec.overlap)) bad('overlap', `expected one of ${OVERLAPS.join(', ')}`);
  return issues;
}

const compiledCache = new WeakMap<ScheduleSpec, Compiled>();

/** Parses a spec once (cached per object). Throws VALIDATION_FAILED for a spec validateSchedule rejects. */
function compile(spec: ScheduleSpec): Compiled {
  const hit = compiledCache.get(spec);
  if (hit) return hit;
  const issues = validateSchedule(spec);
  if (issues.length > 0) throw validationError(issues);
  const zone = spec.timezone ?? 'UTC';
  const at = AT.exec(spec.at ?? '00:00')!;
  const c: Compiled = {
    type: spec.type,
    zone,
    hour: Number(at[1]),
    minute: Number(at[2]),
    weekdays: spec.type === 'weekly' ? parseWeekdays(spec.on).days : new Set(),
    monthDays: spec.type === 'monthly' ? parseMonthDays(spec.on).days : [],
    yearDays: spec.type === 'annually' ? parseYearDays(spec.on).days : [],
    cron: spec.type === 'cron' ? makeCron(spec.cron!, zone) : null,
    startAt: spec.startAt,
    endAt: spec.endAt,
  };
  compiledCache.set(spec, c);
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// Local wall time → instant

/**
 * The instant a local date and time maps to in `zone`, by the calendar rules: an ambiguous time (fall back)
 * takes its first occurrence; a non-existent time (spring forward) takes the first valid instant after
 * the gap, which is the transition itself.
 */
export function resolveLocal(year: number, month: number, day: number, hour: number, minute: number, zone: string): number {
  const dt = DateTime.fromObject({ year, month, day, hour, minute }, { zone });
  if (dt.day === day && dt.hour === hour && dt.minute === minute) {
    // getPossibleOffsets lists both instants of a repeated wall time; the earlier is the first occurrence.
    const options = dt.getPossibleOffsets();
    return options.length > 1 ? Math.min(...options.map((o) => o.toMillis())) : dt.toMillis();
  }
  // In a gap luxon keeps the wall-clock duration (02:30 → 03:30 EDT), which is not our rule: we want the
  // gap's end (03:00 EDT; 02:30 on Lord Howe's 02:00→02:30 day). luxon's instant lies after the transition
  // and one day earlier lies before it, so search that span for the first minute on the new offset, with
  // luxon's zone offsets (tzdb transitions fall on whole minutes).
  const z = IANAZone.create(zone);
  let hi = Math.floor(dt.toMillis() / MINUTE_MS);
  let lo = hi - DAY_MS / MINUTE_MS;
  const after = z.offset(hi * MINUTE_MS);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (z.offset(mid * MINUTE_MS) === after) hi = mid;
    else lo = mid;
  }
  return hi * MINUTE_MS;
}

// ---------------------------------------------------------------------------------------------------------
// Calendar iteration: periods (day, month or year) in calendar order, each yielding its sorted instants.
// An occurrence on local date D always lies within D's local day (a gap moves it later on the same day), so
// the periods' instants are ordered, and the period holding an instant's local date is where to start.

type Unit = 'days' | 'months' | 'years';

function unitOf(type: SchedulingType): Unit {
  return type === 'monthly' ? 'months' : type === 'annually' ? 'years' : 'days';
}

/** The occurrence instants of one period; `p` is a plain calendar date (UTC-zoned, no DST) at its start. */
function periodInstants(c: Compiled, p: DateTime): number[] {
  const at = (y: number, m: number, d: number) => resolveLocal(y, m, d, c.hour, c.minute, c.zone);
  switch (c.type) {
    case 'daily':
      return [at(p.year, p.month, p.day)];
    case 'weekly':
      return c.weekdays.has(p.weekday) ? [at(p.year, p.month, p.day)] : [];
    case 'monthly': {
      const last = p.daysInMonth!;
      // 29–31 clamp to the last day of shorter months; several entries may clamp onto the same day.
      const days = [...new Set(c.monthDays.map((d) => (d === 'last' ? last : Math.min(d, last))))].sort((a, b) => a - b);
      return days.map((d) => at(p.year, p.month, d));
    }
    case 'annually': {
      const out: number[] = [];
      for (const { month, day } of c.yearDays) {
        // Feb 29 runs on Feb 28 in common years.
        const d = Math.min(day, DateTime.utc(p.year, month, 1).daysInMonth!);
        const t = at(p.year, month, d);
        if (out[out.length - 1] !== t) out.push(t);
      }
      return out;
    }
    default:
      return [];
  }
}

function periodOf(c: Compiled, t: number, unit: Unit): DateTime {
  const local = DateTime.fromMillis(t, { zone: c.zone });
  const date = DateTime.utc(local.year, local.month, local.day);
  return unit === 'days' ? date : date.startOf(unit === 'months' ? 'month' : 'year');
}

// How far to look before giving up: enough for any valid spec to match (a weekday within 7 days, a day of
// month within 2 months, a date within 4 years for Feb 29 → always at least Feb 28 each year).
const SCAN: Record<Unit, number> = { days: 8, months: 3, years: 3 };

function calendarNext(c: Compiled, after: number): number | null {
  const unit = unitOf(c.type);
  let p = periodOf(c, after, unit);
  for (let i = 0; i < SCAN[unit]; i++, p = p.plus({ [unit]: 1 })) {
    for (const t of periodInstants(c, p)) if (t > after) return t;
  }
  return null;
}

function calendarPrev(c: Compiled, before: number): number | null {
  const unit = unitOf(c.type);
  let p = periodOf(c, before, unit);
  for (let i = 0; i < SCAN[unit]; i++, p = p.minus({ [unit]: 1 })) {
    const ts = periodInstants(c, p);
    for (let j = ts.length - 1; j >= 0; j--) if (ts[j] < before) return ts[j];
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// Public API

function rawNext(c: Compiled, after: number): number | null {
  if (c.type === 'once') return c.startAt !== undefined && c.startAt > after ? c.startAt : null;
  if (c.cron) return c.cron.nextRun(new Date(after))?.getTime() ?? null;
  return calendarNext(c, after);
}

function rawPrev(c: Compiled, before: number): number | null {
  if (c.type === 'once') return c.startAt !== undefined && c.startAt < before ? c.startAt : null;
  if (c.cron) return c.cron.previousRuns(1, new Date(before))[0]?.getTime() ?? null;
  return calendarPrev(c, before);
}

function next(c: Compiled, after: number): number | null {
  // The first occurrence is the first one ≥ startAt; none after endAt (inclusive bound).
  const from = c.startAt !== undefined ? Math.max(after, c.startAt - 1) : after;
  const t = rawNext(c, from);
  return t === null || (c.endAt !== undefined && t > c.endAt) ? null : t;
}

function prev(c: Compiled, before: number): number | null {
  const upTo = c.endAt !== undefined ? Math.min(before, c.endAt + 1) : before;
  const t = rawPrev(c, upTo);
  return t === null || (c.startAt !== undefined && t < c.startAt) ? null : t;
}

function remaining(spec: ScheduleSpec, occurrencesSoFar: number | undefined): number {
  if (spec.maxOccurrences === undefined || occurrencesSoFar === undefined) return Number.POSITIVE_INFINITY;
  return Math.max(0, spec.maxOccurrences - occurrencesSoFar);
}

/**
 * The first occurrence strictly after `after` (≥ startAt, ≤ endAt), or null when there is none.
 * `once` → startAt (null without one: the task is due at once, which the caller handles).
 * maxOccurrences is enforced only when the caller passes `occurrencesSoFar` (the store knows the count).
 */
export function nextOccurrence(spec: ScheduleSpec, after: number, occurrencesSoFar?: number): number | null {
  if (remaining(spec, occurrencesSoFar) === 0) return null;
  return next(compile(spec), after);
}

/** The last occurrence strictly before `before` (≥ startAt, ≤ endAt), or null. */
export function previousOccurrence(spec: ScheduleSpec, before: number): number | null {
  return prev(compile(spec), before);
}

/** Occurrences in (fromExclusive, toInclusive], at most `limit` (and what maxOccurrences leaves). */
export function occurrencesBetween(
  spec: ScheduleSpec,
  fromExclusive: number,
  toInclusive: number,
  limit: number,
  occurrencesSoFar?: number,
): number[] {
  const c = compile(spec);
  const cap = Math.min(limit, remaining(spec, occurrencesSoFar));
  const out: number[] = [];
  let t = fromExclusive;
  while (out.length < cap) {
    const n = next(c, t);
    if (n === null || n > toInclusive) break;
    out.push(n);
    t = n;
  }
  return out;
}

export interface PreviewEntry {
  at: number;
  /** ISO-8601 in UTC, e.g. "2026-03-08T07:00:00.000Z". */
  utc: string;
  /** ISO-8601 with the offset in the spec's zone, e.g. "2026-03-08T03:00:00.000-04:00". */
  local: string;
}

/** The next `count` occurrences after `after`, in UTC and in the task's zone. */
export function previewOccurrences(spec: ScheduleSpec, after: number, count: number, occurrencesSoFar?: number): PreviewEntry[] {
  const zone = compile(spec).zone;
  return occurrencesBetween(spec, after, Number.POSITIVE_INFINITY, count, occurrencesSoFar).map((at) => ({
    at,
    utc: new Date(at).toISOString(),
    local: DateTime.fromMillis(at, { zone }).toISO()!,
  }));
}

export interface CatchUpDecision {
  /** Occurrences to start now, oldest first. */
  run: number[];
  /** Missed occurrences listed one by one (the oldest, at most maxEnumerate), oldest first. */
  missed: number[];
  /** The first occurrence after max(now, lastScheduledAt); null when the schedule is over. */
  next: number | null;
}

export interface CatchUpResult extends CatchUpDecision {
  /** All missed occurrences, listed or not. Exact when missedCountExact, otherwise an estimate. */
  missedCount: number;
  missedCountExact: boolean;
  /** The span the missed occurrences fall in, for one bulk "missed" record; null when none were missed. */
  missedSpan: { from: number; to: number } | null;
}

export interface CatchUpOptions {
  /** At most this many occurrences start at once (the most recent ones within tolerance). Default 1. */
  maxCatchUp?: number;
  /** At most this many occurrences are listed in `missed`; beyond that they are counted in bulk. Default 1000. */
  maxEnumerate?: number;
  /** Occurrences created so far, to honour maxOccurrences (missed occurrences do not consume it). */
  occurrencesSoFar?: number;
}

/**
 * What to do with the occurrences that fell in (lastScheduledAt, now] — on restart or on any tick.
 * The most recent ones still within tolerance (at + delayTolerance ≥ now) run, at most maxCatchUp (default 1:
 * never a burst); every other occurrence in the window is missed. Work is bounded: the newest candidates
 * are found by walking back from now, the missed ones are listed up to maxEnumerate and the rest counted in
 * bulk (sampled, so a per-second cron after a year of downtime costs a few thousand steps, not 31 million).
 * `lastScheduledAt` null means nothing was scheduled yet: the window then opens at startAt (inclusive), or
 * is empty without one — pass the task's creation time to count from there instead.
 */
export function catchUp(
  spec: ScheduleSpec,
  lastScheduledAt: number | null,
  now: number,
  delayTolerance: number,
  opts: CatchUpOptions = {},
): CatchUpResult {
  const c = compile(spec);
  const maxCatchUp = Math.max(0, opts.maxCatchUp ?? 1);
  const maxEnumerate = Math.max(1, opts.maxEnumerate ?? 1000);
  const left = remaining(spec, opts.occurrencesSoFar);
  const lo = lastScheduledAt ?? (c.startAt !== undefined ? c.startAt - 1 : now); // exclusive lower bound
  const result: CatchUpResult = { run: [], missed: [], next: null, missedCount: 0, missedCountExact: true, missedSpan: null };

  // The runs: the newest occurrences ≤ now, while still within tolerance.
  const budget = Math.min(maxCatchUp, left);
  const run: number[] = [];
  let p = prev(c, now + 1);
  while (p !== null && p > lo && p + delayTolerance >= now && run.length < budget) {
    run.push(p);
    p = prev(c, p);
  }
  result.run = run.reverse();

  // Everything else in (lo, firstRun) or (lo, now] is missed.
  const hi = result.run.length > 0 ? result.run[0] - 1 : now; // inclusive upper bound of the missed span
  if (hi > lo) {
    const counted = countOccurrences(c, lo, hi, maxEnumerate);
    result.missed = counted.listed;
    result.missedCount = counted.count;
    result.missedCountExact = counted.exact;
    if (counted.count > 0) result.missedSpan = { from: counted.listed[0], to: counted.last };
  }

  result.next = left - result.run.length > 0 ? next(c, Math.max(now, lastScheduledAt ?? now)) : null;
  return result;
}

/**
 * Occurrences in (lo, hi]: the first `maxList` listed, then the rest counted with about as many more steps
 * (see countSpan). Exact when the walk reached hi.
 */
function countOccurrences(
  c: Compiled,
  lo: number,
  hi: number,
  maxList: number,
): { listed: number[]; count: number; exact: boolean; last: number } {
  const listed: number[] = [];
  let t = lo;
  for (;;) {
    const n = next(c, t);
    if (n === null || n > hi) return { listed, count: listed.length, exact: true, last: listed[listed.length - 1] ?? lo };
    if (listed.length === maxList) break;
    listed.push(n);
    t = n;
  }
  const rest = countSpan(c, t, hi, maxList);
  return { listed, count: listed.length + rest.count, exact: rest.exact, last: prev(c, hi + 1) ?? t };
}

interface Leaf {
  /** Occurrences counted exactly in this leaf's walked part. */
  seen: number;
  /** Walked up to here; the unknown part is (u, z]. */
  u: number;
  z: number;
  first: number;
  done: boolean;
  /** Estimate of the unknown part (u, z], at the rate between first and u. */
  rest: number;
}

const LEAF_STEPS = 4;

function walkLeaf(c: Compiled, a: number, z: number): Leaf {
  const leaf: Leaf = { seen: 0, u: a, z, first: a, done: true, rest: 0 };
  while (leaf.seen < LEAF_STEPS) {
    const n = next(c, leaf.u);
    if (n === null || n > z) return leaf;
    if (leaf.seen === 0) leaf.first = n;
    leaf.seen++;
    leaf.u = n;
  }
  leaf.done = false;
  leaf.rest = ((leaf.seen - 1) * (z - leaf.u)) / (leaf.u - leaf.first);
  return leaf;
}

/**
 * Counts occurrences in (a, z] in about `budget` steps. Walk a few steps; while budget remains, take the leaf
 * whose unknown part is estimated largest and split that part in two, walking a few steps into each. Empty
 * stretches finish in one step, so the budget flows to where occurrences are: sparse parts end up counted
 * exactly, dense ones extrapolated piecewise, and uneven schedules (a burst each weekday) stay close.
 */
function countSpan(c: Compiled, a: number, z: number, budget: number): { count: number; exact: boolean } {
  const leaves: Leaf[] = [walkLeaf(c, a, z)];
  let spent = LEAF_STEPS;
  while (spent < budget) {
    let widest: Leaf | null = null;
    for (const l of leaves) if (!l.done && (widest === null || l.rest > widest.rest)) widest = l;
    if (widest === null) break;
    const mid = widest.u + Math.floor((widest.z - widest.u) / 2);
    leaves.push(walkLeaf(c, widest.u, mid), walkLeaf(c, mid, widest.z));
    widest.done = true; // its unknown part now belongs to the two new leaves
    widest.rest = 0;
    spent += 2 * LEAF_STEPS;
  }
  let count = 0;
  let exact = true;
  for (const l of leaves) {
    count += l.seen + l.rest;
    if (l.rest > 0) exact = false;
  }
  return { count: Math.round(count), exact };
}

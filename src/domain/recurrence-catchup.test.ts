// Catch-up after downtime: what runs, what is missed, and that the work stays bounded.

import { describe, expect, it } from 'vitest';
import { catchUp } from './recurrence.js';
import type { ScheduleSpec } from './task.js';

const ms = (iso: string) => Date.parse(iso);
const iso = (t: number) => new Date(t).toISOString();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('catchUp', () => {
  const daily: ScheduleSpec = { type: 'daily', at: '09:00', timezone: 'UTC', overlap: 'skip' };

  it('down across three occurrences, tolerance covering only the last: 1 run, 2 missed', () => {
    const d = catchUp(daily, ms('2026-01-01T09:00:00Z'), ms('2026-01-04T10:00:00Z'), 2 * HOUR);
    expect(d.run.map(iso)).toEqual(['2026-01-04T09:00:00.000Z']);
    expect(d.missed.map(iso)).toEqual(['2026-01-02T09:00:00.000Z', '2026-01-03T09:00:00.000Z']);
    expect(d.missedCount).toBe(2);
    expect(d.missedCountExact).toBe(true);
    expect(d.missedSpan).toEqual({ from: ms('2026-01-02T09:00:00Z'), to: ms('2026-01-03T09:00:00Z') });
    expect(iso(d.next!)).toBe('2026-01-05T09:00:00.000Z');
  });

  it('tolerance covering all of them still starts only the most recent by default: never a burst', () => {
    const d = catchUp(daily, ms('2026-01-01T09:00:00Z'), ms('2026-01-04T10:00:00Z'), 7 * DAY);
    expect(d.run.map(iso)).toEqual(['2026-01-04T09:00:00.000Z']);
    expect(d.missedCount).toBe(2);
  });

  it('maxCatchUp raises the number started, oldest first, still only within tolerance', () => {
    const d = catchUp(daily, ms('2026-01-01T09:00:00Z'), ms('2026-01-04T10:00:00Z'), 2 * DAY, { maxCatchUp: 5 });
    // 01-02 09:00 + 2d = 01-04 09:00 < now: missed; 01-03 and 01-04 are within tolerance.
    expect(d.run.map(iso)).toEqual(['2026-01-03T09:00:00.000Z', '2026-01-04T09:00:00.000Z']);
    expect(d.missed.map(iso)).toEqual(['2026-01-02T09:00:00.000Z']);
  });

  it('nothing within tolerance: everything missed, nothing runs', () => {
    const d = catchUp(daily, ms('2026-01-01T09:00:00Z'), ms('2026-01-04T12:00:00Z'), HOUR);
    expect(d.run).toEqual([]);
    expect(d.missedCount).toBe(3);
    expect(iso(d.next!)).toBe('2026-01-05T09:00:00.000Z');
  });

  it('an occurrence exactly at now with zero tolerance runs (at + tolerance ≥ now)', () => {
    const d = catchUp(daily, ms('2026-01-03T09:00:00Z'), ms('2026-01-04T09:00:00Z'), 0);
    expect(d.run).toEqual([ms('2026-01-04T09:00:00Z')]);
    expect(d.missedCount).toBe(0);
    expect(d.missedSpan).toBeNull();
  });

  it('no downtime: empty window, next after lastScheduledAt', () => {
    const d = catchUp(daily, ms('2026-01-05T09:00:00Z'), ms('2026-01-04T10:00:00Z'), HOUR);
    expect(d.run).toEqual([]);
    expect(d.missed).toEqual([]);
    expect(iso(d.next!)).toBe('2026-01-06T09:00:00.000Z');
  });

  it('lastScheduledAt null opens the window at startAt: a delayed once task whose time passed during downtime', () => {
    const once: ScheduleSpec = { type: 'once', timezone: 'UTC', overlap: 'skip', startAt: ms('2026-01-04T09:30:00Z') };
    const within = catchUp(once, null, ms('2026-01-04T10:00:00Z'), HOUR);
    expect(within.run).toEqual([ms('2026-01-04T09:30:00Z')]);
    expect(within.next).toBeNull();
    const tooLate = catchUp(once, null, ms('2026-01-04T12:00:00Z'), HOUR);
    expect(tooLate.run).toEqual([]);
    expect(tooLate.missed).toEqual([ms('2026-01-04T09:30:00Z')]);
    // Without a startAt nothing was ever due.
    const none = catchUp(daily, null, ms('2026-01-04T10:00:00Z'), HOUR);
    expect(none.missedCount + none.run.length).toBe(0);
    expect(iso(none.next!)).toBe('2026-01-05T09:00:00.000Z');
  });

  it('maxOccurrences: runs only what is left, and next is null once the budget is spent', () => {
    const capped: ScheduleSpec = { ...daily, maxOccurrences: 5 };
    const d = catchUp(capped, ms('2026-01-01T09:00:00Z'), ms('2026-01-04T10:00:00Z'), 7 * DAY, { maxCatchUp: 3, occurrencesSoFar: 4 });
    expect(d.run.map(iso)).toEqual(['2026-01-04T09:00:00.000Z']);
    expect(d.missedCount).toBe(2);
    expect(d.next).toBeNull();
  });

  it('a DST zone: NY 02:30 daily down across spring-forward counts 03:00 EDT as the occurrence', () => {
    const ny: ScheduleSpec = { type: 'daily', at: '02:30', timezone: 'America/New_York', overlap: 'skip' };
    const d = catchUp(ny, ms('2026-03-07T07:30:00Z'), ms('2026-03-08T07:10:00Z'), HOUR);
    expect(d.run).toEqual([ms('2026-03-08T07:00:00Z')]);
    expect(d.missedCount).toBe(0);
  });

  it('per-second cron down for a year: bounded work, huge missedCount, one run', () => {
    const perSecond: ScheduleSpec = { type: 'cron', cron: '* * * * * *', timezone: 'UTC', overlap: 'skip' };
    const last = ms('2026-01-01T00:00:00Z');
    const now = ms('2027-01-01T00:00:00Z');
    const t0 = performance.now();
    const d = catchUp(perSecond, last, now, 10_000);
    const elapsed = performance.now() - t0;
    expect(d.run).toEqual([now]);
    expect(d.missed).toHaveLength(1000);
    expect(d.missed[0]).toBe(last + 1000);
    expect(d.missedCountExact).toBe(false);
    const exact = 365 * 86_400 - 1; // every second of 2026 after the first, except the one that runs now
    expect(Math.abs(d.missedCount - exact) / exact).toBeLessThan(0.001);
    expect(d.missedSpan).toEqual({ from: last + 1000, to: now - 1000 });
    expect(d.next).toBe(now + 1000);
    console.info(`catchUp per-second cron, 1 year (UTC): ${elapsed.toFixed(1)} ms, missedCount ${d.missedCount} (exact ${exact})`);
    expect(elapsed).toBeLessThan(10_000);
  });

  it('per-second cron in a DST zone for a year stays bounded too', () => {
    const perSecond: ScheduleSpec = { type: 'cron', cron: '* * * * * *', timezone: 'Europe/London', overlap: 'skip' };
    const last = ms('2026-01-01T00:00:00Z');
    const now = ms('2027-01-01T00:00:00Z');
    const t0 = performance.now();
    const d = catchUp(perSecond, last, now, 10_000, { maxEnumerate: 200 });
    const elapsed = performance.now() - t0;
    expect(d.missed).toHaveLength(200);
    const exact = 365 * 86_400 - 1;
    expect(Math.abs(d.missedCount - exact) / exact).toBeLessThan(0.01);
    console.info(
      `catchUp per-second cron, 1 year (Europe/London, maxEnumerate 200): ${elapsed.toFixed(1)} ms, missedCount ${d.missedCount}`,
    );
    expect(elapsed).toBeLessThan(20_000);
  });

  it('a sparse-then-dense window counts exactly where it can and estimates only the dense part', () => {
    // Every second, but only during 09:00-09:59 on weekdays: most slices are empty or short.
    const spiky: ScheduleSpec = { type: 'cron', cron: '* * 9 * * 1-5', timezone: 'UTC', overlap: 'skip' };
    const d = catchUp(spiky, ms('2026-01-05T00:00:00Z'), ms('2026-01-10T00:00:00Z'), HOUR, { maxEnumerate: 1000 });
    const exact = 5 * 3600; // Mon 5th .. Fri 9th, 3600 each
    expect(d.run).toEqual([]);
    expect(Math.abs(d.missedCount - exact) / exact).toBeLessThan(0.05);
  });
});

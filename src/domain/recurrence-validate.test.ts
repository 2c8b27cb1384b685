// Schedule validation: every bad input names its field and what was expected; and normalizeTask uses it.

import { describe, expect, it } from 'vitest';
import { isTschedError } from './errors.js';
import { nextOccurrence, validateSchedule } from './recurrence.js';
import type { ScheduleSpec } from './task.js';
import { normalizeTask } from './task-spec.js';

const base = { timezone: 'UTC', overlap: 'skip' } as const;
const s = (x: Partial<ScheduleSpec> & Pick<ScheduleSpec, 'type'>): ScheduleSpec => ({ ...base, ...x });

describe('validateSchedule accepts', () => {
  const good: Array<[string, ScheduleSpec]> = [
    ['once with startAt', s({ type: 'once', startAt: 1 })],
    ['daily default at', s({ type: 'daily' })],
    ['daily at 23:59 in Lord Howe', s({ type: 'daily', at: '23:59', timezone: 'Australia/Lord_Howe' })],
    ['weekly names array', s({ type: 'weekly', on: ['mon', 'wed', 'fri'] })],
    ['weekly comma string', s({ type: 'weekly', on: 'mon,wed,fri' })],
    ['weekly numbers 1-7', s({ type: 'weekly', on: [1, 7] })],
    ['weekly range', s({ type: 'weekly', on: 'mon-fri' })],
    ['monthly 31', s({ type: 'monthly', on: 31 })],
    ['monthly last', s({ type: 'monthly', on: 'last' })],
    ['monthly list', s({ type: 'monthly', on: [1, '15', 'last'] })],
    ['annually leap day', s({ type: 'annually', on: '02-29' })],
    ['cron 5 fields', s({ type: 'cron', cron: '0 9 * * 1-5' })],
    ['cron 6 fields', s({ type: 'cron', cron: '*/5 * * * * *' })],
    ['bounds', s({ type: 'daily', startAt: 1000, endAt: 2000, maxOccurrences: 3 })],
  ];
  it.each(good)('%s', (_n, spec) => {
    expect(validateSchedule(spec)).toEqual([]);
  });
});

describe('validateSchedule rejects, naming the field and what was expected', () => {
  const bad: Array<[string, ScheduleSpec, string, RegExp]> = [
    ['unknown type', s({ type: 'hourly' as ScheduleSpec['type'] }), 'schedule.type', /expected one of once, daily/],
    ['bad zone', s({ type: 'daily', timezone: 'Mars/Olympus' }), 'schedule.timezone', /IANA time zone/],
    ['at 24:00', s({ type: 'daily', at: '24:00' }), 'schedule.at', /"HH:MM"/],
    ['at 9:00', s({ type: 'daily', at: '9:00' }), 'schedule.at', /"HH:MM"/],
    [
      'at with cron',
      s({ type: 'cron', cron: '0 9 * * *', at: '09:00' }),
      'schedule.at',
      /only allowed with daily, weekly, monthly or annually/,
    ],
    ['at with once', s({ type: 'once', at: '09:00' }), 'schedule.at', /uses startAt/],
    ['daily with on', s({ type: 'daily', on: 'mon' }), 'schedule.on', /type daily has no "on"/],
    ['weekly without on', s({ type: 'weekly' }), 'schedule.on', /expected weekdays/],
    ['weekly bad name', s({ type: 'weekly', on: 'mon,funday' }), 'schedule.on', /mon\.\.sun or numbers 1–7.*"funday"/],
    ['weekly 0', s({ type: 'weekly', on: 0 }), 'schedule.on', /numbers 1–7/],
    ['weekly 8', s({ type: 'weekly', on: [8] }), 'schedule.on', /"8"/],
    ['monthly without on', s({ type: 'monthly' }), 'schedule.on', /1–31 or "last"/],
    ['monthly 32', s({ type: 'monthly', on: 32 }), 'schedule.on', /1–31 or "last"; got "32"/],
    ['monthly 0', s({ type: 'monthly', on: [0] }), 'schedule.on', /got "0"/],
    ['monthly first', s({ type: 'monthly', on: 'first' }), 'schedule.on', /got "first"/],
    ['annually without on', s({ type: 'annually' }), 'schedule.on', /"MM-DD"/],
    ['annually 02-30', s({ type: 'annually', on: '02-30' }), 'schedule.on', /got "02-30"/],
    ['annually 04-31', s({ type: 'annually', on: '04-31' }), 'schedule.on', /got "04-31"/],
    ['annually 2-9', s({ type: 'annually', on: '2-9' }), 'schedule.on', /"MM-DD"/],
    ['cron missing', s({ type: 'cron' }), 'schedule.cron', /expected a cron expression/],
    ['cron on daily', s({ type: 'daily', cron: '* * * * *' }), 'schedule.cron', /only allowed with type cron/],
    ['cron 4 fields', s({ type: 'cron', cron: '* * * *' }), 'schedule.cron', /5 fields .* or 6 with seconds first; got 4/],
    ['cron 7 fields', s({ type: 'cron', cron: '0 0 0 * * * 2026' }), 'schedule.cron', /got 7/],
    ['cron minute 61', s({ type: 'cron', cron: '61 * * * *' }), 'schedule.cron', /valid cron expression.*minute/],
    ['cron never fires', s({ type: 'cron', cron: '0 0 30 2 *' }), 'schedule.cron', /never does/],
    ['startAt = endAt', s({ type: 'daily', startAt: 5000, endAt: 5000 }), 'schedule.endAt', /after startAt/],
    ['startAt negative', s({ type: 'daily', startAt: -1 }), 'schedule.startAt', /epoch ms/],
    ['maxOccurrences 0', s({ type: 'daily', maxOccurrences: 0 }), 'schedule.maxOccurrences', /integer ≥ 1/],
    ['overlap', s({ type: 'daily', overlap: 'sometimes' as ScheduleSpec['overlap'] }), 'schedule.overlap', /skip, queue, allow, replace/],
  ];
  it.each(bad)('%s', (_n, spec, path, message) => {
    const issues = validateSchedule(spec);
    expect(issues.map((i) => i.path)).toContain(path);
    expect(issues.find((i) => i.path === path)!.message).toMatch(message);
  });

  it('the expansion functions refuse an invalid spec with VALIDATION_FAILED', () => {
    try {
      nextOccurrence(s({ type: 'weekly', on: 'someday' }), 0);
      expect.unreachable('should have thrown');
    } catch (e) {
      expect(isTschedError(e) && e.code).toBe('VALIDATION_FAILED');
      expect(isTschedError(e) && e.issues[0].path).toBe('schedule.on');
    }
  });
});

describe('normalizeTask checks the schedule through validateSchedule', () => {
  const attempt = (schedule: Record<string, unknown>) => {
    try {
      normalizeTask({ command: ['true'], schedule: schedule as never }, undefined, 'tasks[2].');
      return [];
    } catch (e) {
      if (!isTschedError(e)) throw e;
      return e.issues;
    }
  };
  it('weekly with a bad weekday is refused with the prefixed path', () => {
    expect(attempt({ type: 'weekly', on: 'mon,xyz' })).toEqual([
      { path: 'tasks[2].schedule.on', message: 'expected weekday names mon..sun or numbers 1–7 (Mon–Sun); got "xyz"' },
    ]);
  });
  it('a bad at is reported once, not twice', () => {
    const issues = attempt({ type: 'daily', at: '25:00' });
    expect(issues.filter((i) => i.path === 'tasks[2].schedule.at')).toHaveLength(1);
  });
  it('startAt after endAt (ISO input) is refused', () => {
    expect(attempt({ type: 'daily', startAt: '2026-02-01T00:00:00Z', endAt: '2026-01-01T00:00:00Z' }).map((i) => i.path)).toEqual([
      'tasks[2].schedule.endAt',
    ]);
  });
  it('a valid schedule passes and expands', () => {
    const t = normalizeTask({ command: ['true'], schedule: { type: 'monthly', on: 'last', at: '18:00', timezone: 'Europe/London' } });
    expect(t.schedule).not.toBeNull();
    expect(new Date(nextOccurrence(t.schedule!, Date.parse('2026-02-01T00:00:00Z'))!).toISOString()).toBe('2026-02-28T18:00:00.000Z');
  });
});

// Table-driven tests at fixed instants: every schedule type in five zones across both DST changes of 2026
// and 2027, month ends and leap days. Expected instants are written out as local ISO times with offsets,
// checked by hand against the tzdb transitions (which the first test verifies with luxon itself).

import { DateTime, IANAZone } from 'luxon';
import { describe, expect, it } from 'vitest';
import { nextOccurrence, occurrencesBetween, previewOccurrences, previousOccurrence, resolveLocal } from './recurrence.js';
import type { ScheduleSpec } from './task.js';

type SpecIn = Omit<ScheduleSpec, 'overlap' | 'timezone'> & { timezone?: string };
const spec = (s: SpecIn): ScheduleSpec => ({ overlap: 'skip', timezone: 'UTC', ...s });
const ms = (iso: string) => {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new Error(`bad ISO in test: ${iso}`);
  return t;
};
const local = (t: number, zone: string) => DateTime.fromMillis(t, { zone }).toISO({ suppressMilliseconds: true, includeOffset: true })!;
const NY = 'America/New_York';
const LON = 'Europe/London';
const SYD = 'Australia/Sydney';
const LH = 'Australia/Lord_Howe';

describe('tzdb transitions the tables rely on (verified with luxon)', () => {
  // [zone, last instant before (local), first instant after (local)]
  const transitions: Array<[string, string, string]> = [
    [NY, '2026-03-08T01:59-05:00', '2026-03-08T03:00-04:00'],
    [NY, '2026-11-01T01:59-04:00', '2026-11-01T01:00-05:00'],
    [NY, '2027-03-14T01:59-05:00', '2027-03-14T03:00-04:00'],
    [NY, '2027-11-07T01:59-04:00', '2027-11-07T01:00-05:00'],
    [LON, '2026-03-29T00:59+00:00', '2026-03-29T02:00+01:00'],
    [LON, '2026-10-25T01:59+01:00', '2026-10-25T01:00+00:00'],
    [LON, '2027-03-28T00:59+00:00', '2027-03-28T02:00+01:00'],
    [LON, '2027-10-31T01:59+01:00', '2027-10-31T01:00+00:00'],
    [SYD, '2026-04-05T02:59+11:00', '2026-04-05T02:00+10:00'],
    [SYD, '2026-10-04T01:59+10:00', '2026-10-04T03:00+11:00'],
    [SYD, '2027-04-04T02:59+11:00', '2027-04-04T02:00+10:00'],
    [SYD, '2027-10-03T01:59+10:00', '2027-10-03T03:00+11:00'],
    [LH, '2026-04-05T01:59+11:00', '2026-04-05T01:30+10:30'],
    [LH, '2026-10-04T01:59+10:30', '2026-10-04T02:30+11:00'],
    [LH, '2027-04-04T01:59+11:00', '2027-04-04T01:30+10:30'],
    [LH, '2027-10-03T01:59+10:30', '2027-10-03T02:30+11:00'],
  ];
  it.each(transitions)('%s changes offset between %s and %s (one minute apart)', (zone, before, after) => {
    const a = ms(before);
    const b = ms(after);
    expect(b - a).toBe(60_000);
    const z = IANAZone.create(zone);
    expect(z.offset(a)).not.toBe(z.offset(b));
    const withSeconds = (iso: string) => iso.replace(/T(\d\d:\d\d)/, 'T$1:00');
    expect(local(a, zone)).toBe(withSeconds(before));
    expect(local(b, zone)).toBe(withSeconds(after));
  });
});

interface Row {
  name: string;
  spec: ScheduleSpec;
  after: string;
  expected: string[]; // local ISO with offset in spec.timezone
}

const rows: Row[] = [
  // ---- America/New_York: spring 2026-03-08, 2027-03-14 (02:00→03:00); fall 2026-11-01, 2027-11-07 (repeats 01:00–02:00)
  {
    name: 'NY once',
    spec: spec({ type: 'once', timezone: NY, startAt: ms('2026-03-08T03:30:00-04:00') }),
    after: '2026-03-01T00:00:00Z',
    expected: ['2026-03-08T03:30:00-04:00'],
  },
  {
    name: 'NY daily 02:30 across spring-forward 2026 runs at 03:00 that day',
    spec: spec({ type: 'daily', at: '02:30', timezone: NY }),
    after: '2026-03-07T00:00:00-05:00',
    expected: ['2026-03-07T02:30:00-05:00', '2026-03-08T03:00:00-04:00', '2026-03-09T02:30:00-04:00'],
  },
  {
    name: 'NY daily 01:30 across fall-back 2026 runs once, first occurrence (EDT)',
    spec: spec({ type: 'daily', at: '01:30', timezone: NY }),
    after: '2026-10-31T00:00:00-04:00',
    expected: ['2026-10-31T01:30:00-04:00', '2026-11-01T01:30:00-04:00', '2026-11-02T01:30:00-05:00'],
  },
  {
    name: 'NY daily 02:30 across spring-forward 2027',
    spec: spec({ type: 'daily', at: '02:30', timezone: NY }),
    after: '2027-03-13T00:00:00-05:00',
    expected: ['2027-03-13T02:30:00-05:00', '2027-03-14T03:00:00-04:00', '2027-03-15T02:30:00-04:00'],
  },
  {
    name: 'NY daily 01:30 across fall-back 2027',
    spec: spec({ type: 'daily', at: '01:30', timezone: NY }),
    after: '2027-11-06T00:00:00-04:00',
    expected: ['2027-11-06T01:30:00-04:00', '2027-11-07T01:30:00-04:00', '2027-11-08T01:30:00-05:00'],
  },
  {
    name: 'NY weekly sun 02:30 across spring-forward 2026',
    spec: spec({ type: 'weekly', on: ['sun'], at: '02:30', timezone: NY }),
    after: '2026-03-01T12:00:00-05:00',
    expected: ['2026-03-08T03:00:00-04:00', '2026-03-15T02:30:00-04:00'],
  },
  {
    name: 'NY weekly sun 01:30 across fall-back 2027',
    spec: spec({ type: 'weekly', on: 'sun', at: '01:30', timezone: NY }),
    after: '2027-10-31T12:00:00-04:00',
    expected: ['2027-11-07T01:30:00-04:00', '2027-11-14T01:30:00-05:00'],
  },
  {
    name: 'NY monthly on 8 at 02:30 across spring-forward 2026',
    spec: spec({ type: 'monthly', on: 8, at: '02:30', timezone: NY }),
    after: '2026-02-01T00:00:00-05:00',
    expected: ['2026-02-08T02:30:00-05:00', '2026-03-08T03:00:00-04:00', '2026-04-08T02:30:00-04:00'],
  },
  {
    name: 'NY monthly on 1 at 01:30 across fall-back 2026',
    spec: spec({ type: 'monthly', on: '1', at: '01:30', timezone: NY }),
    after: '2026-10-15T00:00:00-04:00',
    expected: ['2026-11-01T01:30:00-04:00', '2026-12-01T01:30:00-05:00'],
  },
  {
    name: 'NY annually 03-14 02:30 (the 2027 spring-forward day)',
    spec: spec({ type: 'annually', on: '03-14', at: '02:30', timezone: NY }),
    after: '2026-01-01T00:00:00Z',
    expected: ['2026-03-14T02:30:00-04:00', '2027-03-14T03:00:00-04:00', '2028-03-14T02:30:00-04:00'],
  },
  {
    name: 'NY annually 11-07 01:30 (the 2027 fall-back day)',
    spec: spec({ type: 'annually', on: '11-07', at: '01:30', timezone: NY }),
    after: '2026-01-01T00:00:00Z',
    expected: ['2026-11-07T01:30:00-05:00', '2027-11-07T01:30:00-04:00', '2028-11-07T01:30:00-05:00'],
  },
  {
    name: 'NY cron 30 2 * * * across spring-forward 2027',
    spec: spec({ type: 'cron', cron: '30 2 * * *', timezone: NY }),
    after: '2027-03-13T00:00:00-05:00',
    expected: ['2027-03-13T02:30:00-05:00', '2027-03-14T03:00:00-04:00', '2027-03-15T02:30:00-04:00'],
  },
  {
    name: 'NY cron 30 1 * * * across fall-back 2026 runs once',
    spec: spec({ type: 'cron', cron: '30 1 * * *', timezone: NY }),
    after: '2026-10-31T00:00:00-04:00',
    expected: ['2026-10-31T01:30:00-04:00', '2026-11-01T01:30:00-04:00', '2026-11-02T01:30:00-05:00'],
  },
  {
    name: 'NY cron list 30 1,2 * * * is fixed-time: 01:30 once at fall-back 2026',
    spec: spec({ type: 'cron', cron: '30 1,2 * * *', timezone: NY }),
    after: '2026-10-31T12:00:00-04:00',
    expected: ['2026-11-01T01:30:00-04:00', '2026-11-01T02:30:00-05:00', '2026-11-02T01:30:00-05:00'],
  },

  // ---- Europe/London: spring 2026-03-29, 2027-03-28 (01:00→02:00); fall 2026-10-25, 2027-10-31 (repeats 01:00–02:00)
  {
    name: 'London once',
    spec: spec({ type: 'once', timezone: LON, startAt: ms('2026-10-25T01:30:00+01:00') }),
    after: '2026-10-01T00:00:00Z',
    expected: ['2026-10-25T01:30:00+01:00'],
  },
  {
    name: 'London daily 01:30 across spring-forward 2026',
    spec: spec({ type: 'daily', at: '01:30', timezone: LON }),
    after: '2026-03-28T00:00:00Z',
    expected: ['2026-03-28T01:30:00+00:00', '2026-03-29T02:00:00+01:00', '2026-03-30T01:30:00+01:00'],
  },
  {
    name: 'London daily 01:30 across fall-back 2026',
    spec: spec({ type: 'daily', at: '01:30', timezone: LON }),
    after: '2026-10-24T00:00:00+01:00',
    expected: ['2026-10-24T01:30:00+01:00', '2026-10-25T01:30:00+01:00', '2026-10-26T01:30:00+00:00'],
  },
  {
    name: 'London daily 01:30 across spring-forward 2027',
    spec: spec({ type: 'daily', at: '01:30', timezone: LON }),
    after: '2027-03-27T00:00:00Z',
    expected: ['2027-03-27T01:30:00+00:00', '2027-03-28T02:00:00+01:00', '2027-03-29T01:30:00+01:00'],
  },
  {
    name: 'London daily 01:30 across fall-back 2027',
    spec: spec({ type: 'daily', at: '01:30', timezone: LON }),
    after: '2027-10-30T00:00:00+01:00',
    expected: ['2027-10-30T01:30:00+01:00', '2027-10-31T01:30:00+01:00', '2027-11-01T01:30:00+00:00'],
  },
  {
    name: 'London weekly sun 01:30 across spring-forward 2027',
    spec: spec({ type: 'weekly', on: 'sun', at: '01:30', timezone: LON }),
    after: '2027-03-21T12:00:00Z',
    expected: ['2027-03-28T02:00:00+01:00', '2027-04-04T01:30:00+01:00'],
  },
  {
    name: 'London monthly on 25 at 01:30 across fall-back 2026',
    spec: spec({ type: 'monthly', on: [25], at: '01:30', timezone: LON }),
    after: '2026-09-01T00:00:00Z',
    expected: ['2026-09-25T01:30:00+01:00', '2026-10-25T01:30:00+01:00', '2026-11-25T01:30:00+00:00'],
  },
  {
    name: 'London annually 03-29 01:30 (the 2026 spring-forward day)',
    spec: spec({ type: 'annually', on: '03-29', at: '01:30', timezone: LON }),
    after: '2026-01-01T00:00:00Z',
    expected: ['2026-03-29T02:00:00+01:00', '2027-03-29T01:30:00+01:00', '2028-03-29T01:30:00+01:00'],
  },
  {
    name: 'London cron 0 9 * * 1-5 across spring-forward 2026 (09:00 local: 09:00Z then 08:00Z)',
    spec: spec({ type: 'cron', cron: '0 9 * * 1-5', timezone: LON }),
    after: '2026-03-26T00:00:00Z',
    expected: ['2026-03-26T09:00:00+00:00', '2026-03-27T09:00:00+00:00', '2026-03-30T09:00:00+01:00', '2026-03-31T09:00:00+01:00'],
  },
  {
    name: 'London cron 0 9 * * 1-5 across fall-back 2027',
    spec: spec({ type: 'cron', cron: '0 9 * * 1-5', timezone: LON }),
    after: '2027-10-28T12:00:00+01:00',
    expected: ['2027-10-29T09:00:00+01:00', '2027-11-01T09:00:00+00:00'],
  },
  {
    name: 'London cron 30 1 * * * across fall-back 2027 runs once',
    spec: spec({ type: 'cron', cron: '30 1 * * *', timezone: LON }),
    after: '2027-10-30T00:00:00+01:00',
    expected: ['2027-10-30T01:30:00+01:00', '2027-10-31T01:30:00+01:00', '2027-11-01T01:30:00+00:00'],
  },

  // ---- Australia/Sydney: fall 2026-04-05, 2027-04-04 (repeats 02:00–03:00); spring 2026-10-04, 2027-10-03 (02:00→03:00)
  {
    name: 'Sydney once',
    spec: spec({ type: 'once', timezone: SYD, startAt: ms('2026-10-04T03:00:00+11:00') }),
    after: '2026-10-01T00:00:00Z',
    expected: ['2026-10-04T03:00:00+11:00'],
  },
  {
    name: 'Sydney daily 02:30 across fall-back 2026',
    spec: spec({ type: 'daily', at: '02:30', timezone: SYD }),
    after: '2026-04-04T00:00:00+11:00',
    expected: ['2026-04-04T02:30:00+11:00', '2026-04-05T02:30:00+11:00', '2026-04-06T02:30:00+10:00'],
  },
  {
    name: 'Sydney daily 02:30 across spring-forward 2026',
    spec: spec({ type: 'daily', at: '02:30', timezone: SYD }),
    after: '2026-10-03T00:00:00+10:00',
    expected: ['2026-10-03T02:30:00+10:00', '2026-10-04T03:00:00+11:00', '2026-10-05T02:30:00+11:00'],
  },
  {
    name: 'Sydney daily 02:30 across fall-back 2027',
    spec: spec({ type: 'daily', at: '02:30', timezone: SYD }),
    after: '2027-04-03T00:00:00+11:00',
    expected: ['2027-04-03T02:30:00+11:00', '2027-04-04T02:30:00+11:00', '2027-04-05T02:30:00+10:00'],
  },
  {
    name: 'Sydney daily 02:30 across spring-forward 2027',
    spec: spec({ type: 'daily', at: '02:30', timezone: SYD }),
    after: '2027-10-02T00:00:00+10:00',
    expected: ['2027-10-02T02:30:00+10:00', '2027-10-03T03:00:00+11:00', '2027-10-04T02:30:00+11:00'],
  },
  {
    name: 'Sydney weekly sun 02:30 across spring-forward 2027',
    spec: spec({ type: 'weekly', on: '7', at: '02:30', timezone: SYD }),
    after: '2027-09-26T12:00:00+10:00',
    expected: ['2027-10-03T03:00:00+11:00', '2027-10-10T02:30:00+11:00'],
  },
  {
    name: 'Sydney monthly on 4 at 02:30 across spring-forward 2026',
    spec: spec({ type: 'monthly', on: 4, at: '02:30', timezone: SYD }),
    after: '2026-09-10T00:00:00+10:00',
    expected: ['2026-10-04T03:00:00+11:00', '2026-11-04T02:30:00+11:00'],
  },
  {
    name: 'Sydney annually 10-04 02:30 (the 2026 spring-forward day)',
    spec: spec({ type: 'annually', on: '10-04', at: '02:30', timezone: SYD }),
    after: '2026-01-01T00:00:00Z',
    expected: ['2026-10-04T03:00:00+11:00', '2027-10-04T02:30:00+11:00', '2028-10-04T02:30:00+11:00'],
  },
  {
    name: 'Sydney cron 30 2 * * * across fall-back 2027 runs once',
    spec: spec({ type: 'cron', cron: '30 2 * * *', timezone: SYD }),
    after: '2027-04-03T00:00:00+11:00',
    expected: ['2027-04-03T02:30:00+11:00', '2027-04-04T02:30:00+11:00', '2027-04-05T02:30:00+10:00'],
  },

  // ---- Australia/Lord_Howe: 30-minute shifts. Fall 2026-04-05, 2027-04-04 (02:00+11 → 01:30+10:30, repeats
  // 01:30–02:00); spring 2026-10-04, 2027-10-03 (02:00 → 02:30)
  {
    name: 'Lord Howe once',
    spec: spec({ type: 'once', timezone: LH, startAt: ms('2026-10-04T02:30:00+11:00') }),
    after: '2026-10-01T00:00:00Z',
    expected: ['2026-10-04T02:30:00+11:00'],
  },
  {
    name: 'Lord Howe daily 01:45 across fall-back 2026 runs once',
    spec: spec({ type: 'daily', at: '01:45', timezone: LH }),
    after: '2026-04-04T00:00:00+11:00',
    expected: ['2026-04-04T01:45:00+11:00', '2026-04-05T01:45:00+11:00', '2026-04-06T01:45:00+10:30'],
  },
  {
    name: 'Lord Howe daily 02:15 on spring-forward 2026 (02:00→02:30) runs at 02:30',
    spec: spec({ type: 'daily', at: '02:15', timezone: LH }),
    after: '2026-10-03T00:00:00+10:30',
    expected: ['2026-10-03T02:15:00+10:30', '2026-10-04T02:30:00+11:00', '2026-10-05T02:15:00+11:00'],
  },
  {
    name: 'Lord Howe daily 01:45 across fall-back 2027',
    spec: spec({ type: 'daily', at: '01:45', timezone: LH }),
    after: '2027-04-03T00:00:00+11:00',
    expected: ['2027-04-03T01:45:00+11:00', '2027-04-04T01:45:00+11:00', '2027-04-05T01:45:00+10:30'],
  },
  {
    name: 'Lord Howe daily 02:15 across spring-forward 2027',
    spec: spec({ type: 'daily', at: '02:15', timezone: LH }),
    after: '2027-10-02T00:00:00+10:30',
    expected: ['2027-10-02T02:15:00+10:30', '2027-10-03T02:30:00+11:00', '2027-10-04T02:15:00+11:00'],
  },
  {
    name: 'Lord Howe weekly sun 02:15 across spring-forward 2026',
    spec: spec({ type: 'weekly', on: 'Sunday', at: '02:15', timezone: LH }),
    after: '2026-09-27T12:00:00+10:30',
    expected: ['2026-10-04T02:30:00+11:00', '2026-10-11T02:15:00+11:00'],
  },
  {
    name: 'Lord Howe monthly on 5 at 01:45 across fall-back 2026',
    spec: spec({ type: 'monthly', on: 5, at: '01:45', timezone: LH }),
    after: '2026-03-10T00:00:00+11:00',
    expected: ['2026-04-05T01:45:00+11:00', '2026-05-05T01:45:00+10:30'],
  },
  {
    name: 'Lord Howe annually 10-03 02:15 (the 2027 spring-forward day)',
    spec: spec({ type: 'annually', on: '10-03', at: '02:15', timezone: LH }),
    after: '2026-01-01T00:00:00Z',
    expected: ['2026-10-03T02:15:00+10:30', '2027-10-03T02:30:00+11:00', '2028-10-03T02:15:00+11:00'],
  },
  {
    name: 'Lord Howe cron 15 2 * * * on spring-forward 2026 runs at 02:30',
    spec: spec({ type: 'cron', cron: '15 2 * * *', timezone: LH }),
    after: '2026-10-03T00:00:00+10:30',
    expected: ['2026-10-03T02:15:00+10:30', '2026-10-04T02:30:00+11:00', '2026-10-05T02:15:00+11:00'],
  },
  {
    name: 'Lord Howe cron 45 1 * * * across fall-back 2027 runs once',
    spec: spec({ type: 'cron', cron: '45 1 * * *', timezone: LH }),
    after: '2027-04-03T00:00:00+11:00',
    expected: ['2027-04-03T01:45:00+11:00', '2027-04-04T01:45:00+11:00', '2027-04-05T01:45:00+10:30'],
  },

  // ---- UTC: month ends, leap days, weekday lists, seconds cron
  {
    name: 'UTC once',
    spec: spec({ type: 'once', startAt: ms('2028-02-29T12:00:00Z') }),
    after: '2028-01-01T00:00:00Z',
    expected: ['2028-02-29T12:00:00Z'],
  },
  {
    name: 'UTC daily 02:30 through the 2028 leap day',
    spec: spec({ type: 'daily', at: '02:30' }),
    after: '2028-02-28T00:00:00Z',
    expected: ['2028-02-28T02:30:00Z', '2028-02-29T02:30:00Z', '2028-03-01T02:30:00Z'],
  },
  {
    name: 'UTC daily with default at 00:00',
    spec: spec({ type: 'daily' }),
    after: '2026-12-31T00:00:00Z',
    expected: ['2027-01-01T00:00:00Z', '2027-01-02T00:00:00Z'],
  },
  {
    name: 'UTC weekly mon,wed,fri 09:00',
    spec: spec({ type: 'weekly', on: ['mon', 'wed', 'fri'], at: '09:00' }),
    after: '2026-01-01T00:00:00Z', // a Thursday
    expected: ['2026-01-02T09:00:00Z', '2026-01-05T09:00:00Z', '2026-01-07T09:00:00Z', '2026-01-09T09:00:00Z'],
  },
  {
    name: 'UTC monthly on 31 runs on the last day of Feb and Apr',
    spec: spec({ type: 'monthly', on: 31, at: '12:00' }),
    after: '2026-01-15T00:00:00Z',
    expected: ['2026-01-31T12:00:00Z', '2026-02-28T12:00:00Z', '2026-03-31T12:00:00Z', '2026-04-30T12:00:00Z', '2026-05-31T12:00:00Z'],
  },
  {
    name: 'UTC monthly on 30 in the 2028 leap February',
    spec: spec({ type: 'monthly', on: 30, at: '12:00' }),
    after: '2028-01-15T00:00:00Z',
    expected: ['2028-01-30T12:00:00Z', '2028-02-29T12:00:00Z', '2028-03-30T12:00:00Z'],
  },
  {
    name: 'UTC monthly "last" across the leap year',
    spec: spec({ type: 'monthly', on: 'last', at: '23:59' }),
    after: '2027-12-31T23:59:00Z',
    expected: ['2028-01-31T23:59:00Z', '2028-02-29T23:59:00Z', '2028-03-31T23:59:00Z', '2028-04-30T23:59:00Z'],
  },
  {
    name: 'UTC monthly on 1, 15 and "last"; 30 and 31 clamp onto one day in February',
    spec: spec({ type: 'monthly', on: '1,15,30,31,last', at: '06:00' }),
    after: '2027-01-31T12:00:00Z',
    expected: [
      '2027-02-01T06:00:00Z',
      '2027-02-15T06:00:00Z',
      '2027-02-28T06:00:00Z',
      '2027-03-01T06:00:00Z',
      '2027-03-15T06:00:00Z',
      '2027-03-30T06:00:00Z',
      '2027-03-31T06:00:00Z',
    ],
  },
  {
    name: 'UTC annually 02-29: Feb 28 in 2026 and 2027, Feb 29 in 2028',
    spec: spec({ type: 'annually', on: '02-29', at: '08:00' }),
    after: '2026-01-01T00:00:00Z',
    expected: ['2026-02-28T08:00:00Z', '2027-02-28T08:00:00Z', '2028-02-29T08:00:00Z', '2029-02-28T08:00:00Z'],
  },
  {
    name: 'UTC annually on two dates',
    spec: spec({ type: 'annually', on: ['12-31', '01-01'] }),
    after: '2026-06-01T00:00:00Z',
    expected: ['2026-12-31T00:00:00Z', '2027-01-01T00:00:00Z', '2027-12-31T00:00:00Z'],
  },
  {
    name: 'UTC 6-field seconds cron */5 * * * * *',
    spec: spec({ type: 'cron', cron: '*/5 * * * * *' }),
    after: '2026-01-01T00:00:03.250Z',
    expected: ['2026-01-01T00:00:05Z', '2026-01-01T00:00:10Z', '2026-01-01T00:00:15Z'],
  },
  {
    name: 'UTC cron last day of month (L)',
    spec: spec({ type: 'cron', cron: '0 12 L * *' }),
    after: '2028-01-31T13:00:00Z',
    expected: ['2028-02-29T12:00:00Z', '2028-03-31T12:00:00Z'],
  },
];

describe('occurrences at fixed instants (type × zone × DST change, month ends, leap days)', () => {
  it.each(rows.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    const got = occurrencesBetween(
      row.spec,
      ms(row.after),
      Number.POSITIVE_INFINITY,
      row.expected.length + (row.spec.type === 'once' ? 1 : 0),
    );
    expect(got.map((t) => local(t, row.spec.timezone))).toEqual(row.expected);
    // The backward walk agrees with the forward one.
    for (let i = 1; i < got.length; i++) expect(previousOccurrence(row.spec, got[i])).toBe(got[i - 1]);
    // nextOccurrence is strictly after: from an occurrence, the next one.
    if (got.length > 1) expect(nextOccurrence(row.spec, got[0])).toBe(got[1]);
  });
});

describe('DST rules in UTC terms', () => {
  it('New York 02:30 on 2026-03-08 is 07:00Z (03:00 EDT); 01:30 on 2026-11-01 is 05:30Z (EDT), not 06:30Z', () => {
    expect(new Date(resolveLocal(2026, 3, 8, 2, 30, NY)).toISOString()).toBe('2026-03-08T07:00:00.000Z');
    expect(new Date(resolveLocal(2026, 11, 1, 1, 30, NY)).toISOString()).toBe('2026-11-01T05:30:00.000Z');
    const daily = spec({ type: 'daily', at: '01:30', timezone: NY });
    const got = occurrencesBetween(daily, ms('2026-11-01T00:00:00-04:00'), ms('2026-11-01T23:59:00-05:00'), 10);
    expect(got).toEqual([ms('2026-11-01T05:30:00Z')]);
  });
  it('Lord Howe 02:15 on 2026-10-04 is the transition instant 15:30Z', () => {
    expect(new Date(resolveLocal(2026, 10, 4, 2, 15, LH)).toISOString()).toBe('2026-10-03T15:30:00.000Z');
  });
  it('London 0 9 * * 1-5 keeps 09:00 local: 09:00Z before the change and 08:00Z after', () => {
    const s = spec({ type: 'cron', cron: '0 9 * * 1-5', timezone: LON });
    const got = occurrencesBetween(s, ms('2026-03-27T00:00:00Z'), ms('2026-03-31T00:00:00Z'), 10).map((t) => new Date(t).toISOString());
    expect(got).toEqual(['2026-03-27T09:00:00.000Z', '2026-03-30T08:00:00.000Z']);
  });
  it('an interval cron keeps running in real time through a repeated hour and skips the missing one', () => {
    const s = spec({ type: 'cron', cron: '0 */30 * * * *', timezone: NY });
    // Fall back: 01:00–02:00 happens twice, so 5 half-hours fall in 00:45–02:15 local (3.5 real hours).
    const fall = occurrencesBetween(s, ms('2026-11-01T00:45:00-04:00'), ms('2026-11-01T02:15:00-05:00'), 20);
    expect(fall.map((t) => local(t, NY))).toEqual([
      '2026-11-01T01:00:00-04:00',
      '2026-11-01T01:30:00-04:00',
      '2026-11-01T01:00:00-05:00',
      '2026-11-01T01:30:00-05:00',
      '2026-11-01T02:00:00-05:00',
    ]);
    // Spring forward: 02:00–03:00 does not exist; every 30 real minutes still fires.
    const spring = occurrencesBetween(s, ms('2026-03-08T01:15:00-05:00'), ms('2026-03-08T03:45:00-04:00'), 20);
    expect(spring.map((t) => local(t, NY))).toEqual([
      '2026-03-08T01:30:00-05:00',
      '2026-03-08T03:00:00-04:00',
      '2026-03-08T03:30:00-04:00',
    ]);
  });
});

describe('weekly `on` forms are equivalent', () => {
  const forms: ScheduleSpec['on'][] = [['mon', 'wed', 'fri'], 'mon,wed,fri', 'MON, Wed ,friday', [1, 3, 5], ['1', 'wed', 5]];
  it.each(forms.map((f) => [JSON.stringify(f), f] as const))('%s', (_n, on) => {
    const got = occurrencesBetween(spec({ type: 'weekly', on, at: '09:00' }), ms('2026-01-01T00:00:00Z'), ms('2026-01-10T00:00:00Z'), 10);
    expect(got.map((t) => new Date(t).toISOString().slice(0, 10))).toEqual(['2026-01-02', '2026-01-05', '2026-01-07', '2026-01-09']);
  });
  it('ranges, including one that wraps past Sunday', () => {
    const weekdays = occurrencesBetween(
      spec({ type: 'weekly', on: 'mon-fri' }),
      ms('2026-01-03T00:00:00Z'),
      ms('2026-01-11T00:00:00Z'),
      10,
    );
    expect(weekdays.map((t) => DateTime.fromMillis(t, { zone: 'UTC' }).weekdayShort)).toEqual(['Mon', 'Tue', 'Wed', 'Thu', 'Fri']);
    const wrap = occurrencesBetween(spec({ type: 'weekly', on: 'fri-mon' }), ms('2026-01-04T12:00:00Z'), ms('2026-01-12T23:00:00Z'), 10);
    expect(wrap.map((t) => DateTime.fromMillis(t, { zone: 'UTC' }).weekdayShort)).toEqual(['Mon', 'Fri', 'Sat', 'Sun', 'Mon']);
  });
});

describe('startAt, endAt, maxOccurrences', () => {
  const s = spec({ type: 'daily', at: '09:00', startAt: ms('2026-01-03T09:00:00Z'), endAt: ms('2026-01-05T09:00:00Z') });
  it('first occurrence is the first ≥ startAt; none after endAt (both inclusive)', () => {
    expect(occurrencesBetween(s, ms('2026-01-01T00:00:00Z'), Number.POSITIVE_INFINITY, 10).map((t) => new Date(t).toISOString())).toEqual([
      '2026-01-03T09:00:00.000Z',
      '2026-01-04T09:00:00.000Z',
      '2026-01-05T09:00:00.000Z',
    ]);
    expect(nextOccurrence(s, ms('2026-01-05T09:00:00Z'))).toBeNull();
    expect(previousOccurrence(s, ms('2026-01-03T09:00:00Z'))).toBeNull();
    expect(previousOccurrence(s, ms('2026-02-01T00:00:00Z'))).toBe(ms('2026-01-05T09:00:00Z'));
  });
  it('startAt between two occurrences starts at the next one', () => {
    const late = spec({ type: 'daily', at: '09:00', startAt: ms('2026-01-03T09:00:00.001Z') });
    expect(nextOccurrence(late, 0)).toBe(ms('2026-01-04T09:00:00Z'));
  });
  it('cron honours the bounds too', () => {
    const c = spec({ type: 'cron', cron: '*/5 * * * * *', startAt: ms('2026-01-01T00:00:07Z'), endAt: ms('2026-01-01T00:00:20Z') });
    expect(occurrencesBetween(c, 0, Number.POSITIVE_INFINITY, 100).map((t) => new Date(t).toISOString().slice(17))).toEqual([
      '10.000Z',
      '15.000Z',
      '20.000Z',
    ]);
  });
  it('once: startAt, or null when after ≥ startAt or without one', () => {
    const o = spec({ type: 'once', startAt: ms('2026-05-01T00:00:00Z') });
    expect(nextOccurrence(o, ms('2026-04-30T00:00:00Z'))).toBe(ms('2026-05-01T00:00:00Z'));
    expect(nextOccurrence(o, ms('2026-05-01T00:00:00Z'))).toBeNull();
    expect(nextOccurrence(spec({ type: 'once' }), 0)).toBeNull();
  });
  it('maxOccurrences is enforced when the caller passes occurrencesSoFar', () => {
    const m = spec({ type: 'daily', maxOccurrences: 3 });
    expect(occurrencesBetween(m, 0, ms('2026-01-01T00:00:00Z'), 10, 1)).toHaveLength(2);
    expect(nextOccurrence(m, 0, 3)).toBeNull();
    expect(nextOccurrence(m, 0, 2)).toBe(ms('1970-01-02T00:00:00Z'));
    expect(nextOccurrence(m, 0)).toBe(ms('1970-01-02T00:00:00Z')); // count unknown: not enforced here
  });
});

describe('previewOccurrences', () => {
  it('lists instants in UTC and in the task zone with its offset', () => {
    const p = previewOccurrences(spec({ type: 'daily', at: '02:30', timezone: NY }), ms('2026-03-07T12:00:00Z'), 2);
    expect(p).toEqual([
      { at: ms('2026-03-08T07:00:00Z'), utc: '2026-03-08T07:00:00.000Z', local: '2026-03-08T03:00:00.000-04:00' },
      { at: ms('2026-03-09T06:30:00Z'), utc: '2026-03-09T06:30:00.000Z', local: '2026-03-09T02:30:00.000-04:00' },
    ]);
  });
  it('stops early when the schedule ends', () => {
    expect(previewOccurrences(spec({ type: 'once', startAt: 1000 }), 0, 5)).toHaveLength(1);
  });
});

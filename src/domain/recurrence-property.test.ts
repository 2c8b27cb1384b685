// Properties over random specs and instants in DST zones: forward and backward walks agree, nothing is
// skipped between an instant and its next occurrence, and each occurrence keeps its local wall time unless
// that time does not exist (then it lands exactly on the transition).

import fc from 'fast-check';
import { DateTime, IANAZone } from 'luxon';
import { describe, expect, it } from 'vitest';
import { nextOccurrence, previousOccurrence } from './recurrence.js';
import type { ScheduleSpec } from './task.js';

const ZONES = ['America/New_York', 'Europe/London', 'Australia/Sydney', 'Australia/Lord_Howe', 'UTC', 'America/Santiago', 'Asia/Kathmandu'];
const hhmm = (h: number, m: number) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`;

const specArb: fc.Arbitrary<ScheduleSpec> = fc
  .record({
    zone: fc.constantFrom(...ZONES),
    h: fc.integer({ min: 0, max: 23 }),
    m: fc.constantFrom(0, 15, 30, 45, 59),
    kind: fc.constantFrom('daily', 'weekly', 'monthly', 'annually'),
    weekdays: fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 7 }),
    monthDays: fc.uniqueArray(fc.oneof(fc.integer({ min: 1, max: 31 }), fc.constant('last')), { minLength: 1, maxLength: 4 }),
    yearDay: fc.constantFrom('01-01', '02-29', '03-31', '10-04', '11-01', '12-31'),
  })
  .map(({ zone, h, m, kind, weekdays, monthDays, yearDay }) => {
    const base = { timezone: zone, overlap: 'skip' as const, at: hhmm(h, m) };
    if (kind === 'weekly') return { ...base, type: 'weekly', on: weekdays };
    if (kind === 'monthly') return { ...base, type: 'monthly', on: monthDays };
    if (kind === 'annually') return { ...base, type: 'annually', on: yearDay };
    return { ...base, type: 'daily' };
  });

const instantArb = fc.integer({ min: Date.parse('2026-01-01T00:00:00Z'), max: Date.parse('2028-12-31T00:00:00Z') });

describe('recurrence properties', () => {
  it('next is after, prev(next) ≤ after, and the wall time is kept or moved to the gap end', () => {
    fc.assert(
      fc.property(specArb, instantArb, (spec, after) => {
        const n = nextOccurrence(spec, after);
        expect(n).not.toBeNull();
        expect(n!).toBeGreaterThan(after);
        const p = previousOccurrence(spec, n!);
        expect(p === null || p <= after).toBe(true);
        const local = DateTime.fromMillis(n!, { zone: spec.timezone });
        if (local.toFormat('HH:mm') !== spec.at) {
          // Only allowed in a spring-forward gap: the offset changed exactly at n.
          const z = IANAZone.create(spec.timezone);
          expect(z.offset(n! - 1)).toBeLessThan(z.offset(n!));
        } else {
          // A repeated wall time takes its first occurrence: an hour (or 30 min) earlier would not read the same.
          const earlier = DateTime.fromMillis(n! - 3_600_000, { zone: spec.timezone }).toFormat('HH:mm');
          const earlierHalf = DateTime.fromMillis(n! - 1_800_000, { zone: spec.timezone }).toFormat('HH:mm');
          expect(earlier === spec.at || earlierHalf === spec.at).toBe(false);
        }
      }),
      { numRuns: 300, seed: 20260308 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import { normalizeSchedule, planOccurrences } from './occurrences.js';

const MIN = 60_000;
const M0 = Date.parse('2026-01-01T00:00:00Z');
const spec = (overlap: 'skip' | 'queue' | 'allow' | 'replace', extra: Record<string, unknown> = {}) =>
  normalizeSchedule({ type: 'cron', cron: '* * * * *', overlap, ...extra });
const live = (id: number, k: number, status: 'waiting' | 'in_progress' = 'in_progress', held = false) => ({
  id,
  occurrenceAt: M0 + k * MIN,
  status,
  held,
});

describe('planOccurrences', () => {
  it('creates the due instant when nothing is live, whatever the policy', () => {
    for (const p of ['skip', 'queue', 'allow', 'replace'] as const) {
      const plan = planOccurrences({ spec: spec(p), delayTolerance: 30_000, watermark: M0, occurrencesSoFar: 0, live: [] }, M0 + MIN + 1);
      expect(plan).toMatchObject({
        create: [{ at: M0 + MIN, held: false }],
        cancel: [],
        skipped: [],
        watermark: M0 + MIN + 1,
        next: M0 + 2 * MIN,
      });
    }
  });

  it('applies the overlap policy to a live previous occurrence', () => {
    const base = { delayTolerance: 30_000, watermark: M0 + MIN, occurrencesSoFar: 1, live: [live(7, 1)] };
    const now = M0 + 2 * MIN;
    expect(planOccurrences({ ...base, spec: spec('skip') }, now)).toMatchObject({
      create: [],
      skipped: [{ at: M0 + 2 * MIN, reason: 'the previous occurrence (task 7) is in progress' }],
    });
    expect(planOccurrences({ ...base, spec: spec('queue') }, now).create).toEqual([{ at: M0 + 2 * MIN, held: true }]);
    expect(planOccurrences({ ...base, spec: spec('queue') }, now, { maxQueued: 0 }).skipped).toHaveLength(1);
    expect(planOccurrences({ ...base, spec: spec('allow') }, now).create).toEqual([{ at: M0 + 2 * MIN, held: false }]);
    expect(planOccurrences({ ...base, spec: spec('replace') }, now)).toMatchObject({
      cancel: [7],
      create: [{ at: M0 + 2 * MIN, held: false }],
    });
  });

  it('downtime: the newest instant within tolerance runs, the others are missed; maxOccurrences ends it', () => {
    const plan = planOccurrences(
      { spec: spec('skip'), delayTolerance: 90_000, watermark: M0, occurrencesSoFar: 0, live: [] },
      M0 + 5 * MIN + 10_000,
    );
    expect(plan.create.map((c) => c.at)).toEqual([M0 + 5 * MIN]);
    expect(plan.missed.missed).toEqual([1, 2, 3, 4].map((k) => M0 + k * MIN));
    const last = planOccurrences(
      { spec: spec('allow', { maxOccurrences: 3 }), delayTolerance: 0, watermark: M0 + 2 * MIN, occurrencesSoFar: 2, live: [] },
      M0 + 3 * MIN,
    );
    expect(last).toMatchObject({ create: [{ at: M0 + 3 * MIN }], next: null, occurrencesCreated: 3 });
  });
});

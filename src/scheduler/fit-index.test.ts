import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FitIndex } from './fit-index.js';

const GiB = 1024 ** 3;
const TOP_C = 16_000;
const TOP_M = 64 * GiB;

interface Leaf {
  c: number;
  m: number;
  p: number;
}

// Free amounts spread over many grid levels, including tiny and exactly-zero ones.
const amount = (top: number) =>
  fc.oneof(
    fc.constant(0),
    fc.integer({ min: 1, max: 16 }).map((k) => (top * k) / 16),
    fc.double({ min: 0, max: 1, noNaN: true }).map((f) => Math.round(top * f ** 4)),
  );
const leafArb = fc.record({ c: amount(TOP_C), m: amount(TOP_M), p: fc.integer({ min: 0, max: 3 }) });
const requestArb = fc.record({ c: amount(TOP_C), m: amount(TOP_M), p: fc.integer({ min: 0, max: 3 }) });

function build(leaves: Leaf[]): FitIndex {
  const index = new FitIndex(leaves.length, TOP_C / 4, TOP_M / 4, TOP_C, TOP_M);
  for (const [pos, l] of leaves.entries()) index.setLeaf(pos, l.c, l.m, l.p, TOP_C, TOP_M);
  index.rebuild();
  return index;
}

const fits = (l: Leaf, r: Leaf) => l.c >= r.c && l.m >= r.m && l.p >= r.p;

/** The scores findBest minimises, computed directly. */
function score(l: Leaf, r: Leaf, mode: 'binpack' | 'spread', dom: 0 | 1): number {
  if (mode === 'binpack') {
    const lc = (l.c - r.c) / (TOP_C / 4);
    const lm = (l.m - r.m) / (TOP_M / 4);
    return dom === 0 ? lc + 1e-6 * lm : lm + 1e-6 * lc;
  }
  return dom === 0 ? -(l.c / TOP_C) - 1e-6 * (l.m / TOP_M) : -(l.m / TOP_M) - 1e-6 * (l.c / TOP_C);
}

describe('FitIndex', () => {
  it('finds a fitting worker exactly when one exists, and the best one when it may score them all (property)', () => {
    fc.assert(
      fc.property(
        fc.array(leafArb, { minLength: 1, maxLength: 70 }),
        fc.array(fc.tuple(fc.nat(), leafArb), { maxLength: 10 }),
        requestArb,
        fc.constantFrom<'binpack' | 'spread'>('binpack', 'spread'),
        fc.constantFrom<0 | 1>(0, 1),
        (initial, updates, r, mode, dom) => {
          const leaves = initial.map((l) => ({ ...l }));
          const index = build(leaves);
          // Updates go through the incremental path, as take() does.
          for (const [k, l] of updates) {
            const pos = k % leaves.length;
            leaves[pos] = { ...l };
            index.update(pos, l.c, l.m, l.p, TOP_C, TOP_M);
          }
          const anyFit = leaves.some((l) => fits(l, r));
          const pos = index.findBest(r.c, r.m, r.p, mode, dom, null);
          if (!anyFit) {
            expect(pos).toBe(-1);
            return;
          }
          expect(pos).toBeGreaterThanOrEqual(0);
          expect(fits(leaves[pos], r)).toBe(true);
          // With no stop-early limit the search is exact.
          index.scoreLimit = Number.POSITIVE_INFINITY;
          const exact = index.findBest(r.c, r.m, r.p, mode, dom, null);
          const best = Math.min(...leaves.filter((l) => fits(l, r)).map((l) => score(l, r, mode, dom)));
          expect(score(leaves[exact], r, mode, dom)).toBeCloseTo(best, 9);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('skips the workers accept() refuses, and gives -1 when it refuses every fitting one', () => {
    const index = build([
      { c: 4000, m: 8 * GiB, p: 0 },
      { c: 2000, m: 4 * GiB, p: 0 },
      { c: 1000, m: 1 * GiB, p: 0 },
    ]);
    expect(index.findBest(1500, GiB, 0, 'binpack', 0, null)).toBe(1);
    expect(index.findBest(1500, GiB, 0, 'binpack', 0, (pos) => pos !== 1)).toBe(0);
    expect(index.findBest(1500, GiB, 0, 'binpack', 0, (pos) => pos === 2)).toBe(-1);
  });

  it('never offers an overcommitted worker', () => {
    const index = build([{ c: -500, m: 8 * GiB, p: 3 }]);
    expect(index.findBest(0, 0, 0, 'binpack', 0, null)).toBe(-1);
  });
});

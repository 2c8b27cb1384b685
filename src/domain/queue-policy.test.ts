import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { afterRun, backoffDelay } from './queue-policy.js';
import { DEFAULT_RETRY } from './task.js';

describe('backoff with full jitter', () => {
  it('stays within [0, min(maxDelay, base·2^(n-1)))', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), (attempt, r) => {
        const d = backoffDelay(DEFAULT_RETRY, attempt, r);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(Math.min(DEFAULT_RETRY.maxDelay, DEFAULT_RETRY.backoff * 2 ** (attempt - 1)));
      }),
    );
  });
});

describe('afterRun', () => {
  const base = { exitCode: 1, totalAttempts: 3, retry: DEFAULT_RETRY, now: 1_000_000, random: 0.5 };
  it('retries with a later due time while attempts remain', () => {
    const d = afterRun({ ...base, outcome: 'failed', attempts: 1 });
    expect(d.event).toBe('retry');
    expect(d.dueAt).toBe(1_000_000 + 500);
  });
  it('fails when attempts are exhausted', () => {
    expect(afterRun({ ...base, outcome: 'timed_out', attempts: 3 }).event).toBe('fail');
  });
  it('fails at once on a non-retryable exit code', () => {
    const d = afterRun({ ...base, outcome: 'failed', attempts: 1, retry: { ...DEFAULT_RETRY, noRetryExitCodes: [1] } });
    expect(d.event).toBe('fail');
    expect(d.reason).toMatch(/not retryable/);
  });
  it('a lost run is retried like a failure', () => {
    expect(afterRun({ ...base, outcome: 'lost', exitCode: null, attempts: 2 }).event).toBe('retry');
  });
  it('success is done', () => {
    expect(afterRun({ ...base, outcome: 'succeeded', exitCode: 0, attempts: 3 }).event).toBe('succeed');
  });
});

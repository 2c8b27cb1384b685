import { describe, expect, it } from 'vitest';
import type { Assignment } from '../store/port.js';
import { Wakeups } from './wakeups.js';

const assignment = (runId: number) => ({ run: { id: runId } }) as unknown as Assignment;

describe('Wakeups mail', () => {
  it('a run handed out from memory stays known until the write carrying its delivered mark commits', () => {
    const w = new Wakeups();
    w.post('w1', [assignment(1), assignment(2)]);
    expect(w.mailCount('w1')).toBe(2);
    expect(w.takeMail('w1', 10).map((a) => a.run.id)).toEqual([1, 2]);
    expect(w.mailCount('w1')).toBe(0);
    expect(w.pendingMailed('w1')).toEqual([1, 2]);
    // A write takes the marks: while it runs, a poll must still count them as in hand.
    const marks = w.takeMailed('w1');
    expect(marks).toEqual([1, 2]);
    expect(w.pendingMailed('w1')).toEqual([1, 2]);
    expect(w.takeMailed('w1')).toEqual([]);
    w.marked('w1', marks, true);
    expect(w.pendingMailed('w1')).toEqual([]);
  });

  it('marks whose write failed go to the next write', () => {
    const w = new Wakeups();
    w.post('w1', [assignment(7)]);
    w.takeMail('w1', 10);
    const marks = w.takeMailed('w1');
    w.post('w1', [assignment(8)]);
    w.takeMail('w1', 10);
    w.marked('w1', marks, false);
    expect(w.pendingMailed('w1').sort()).toEqual([7, 8]);
    expect(w.takeMailed('w1').sort()).toEqual([7, 8]);
  });

  it('a parked poll is woken by mail for its worker only', async () => {
    const w = new Wakeups();
    const mine = w.waitWorker('w1', 5000);
    const other = w.waitWorker('w2', 50);
    let woke = false;
    void mine.promise.then(() => {
      woke = true;
    });
    w.post('w1', [assignment(3)]);
    await mine.promise;
    expect(woke).toBe(true);
    const t0 = Date.now();
    await other.promise;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
  });
});

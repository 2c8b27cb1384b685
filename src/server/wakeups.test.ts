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

  it('a store take answered after the same runs went out by mail does not hand them out again', () => {
    const w = new Wakeups();
    // The pass's commit is answered first: its mail reaches the parked poll…
    w.post('w1', [assignment(1), assignment(2)]);
    expect(w.takeMail('w1', 10).map((a) => a.run.id)).toEqual([1, 2]);
    // …then a report-and-poll's store write, which took runs 2 and 3, is answered.
    expect([...w.takenFromStoreNow('w1', [2, 3])]).toEqual([2]);
    // Another worker's runs of the same ids are its own business.
    expect(w.takenFromStoreNow('w2', [2]).size).toBe(0);
    // And the other way round: runs a poll took from the store stay out of mail posted after it.
    w.post('w1', [assignment(3), assignment(4)]);
    expect(w.takeMail('w1', 10).map((a) => a.run.id)).toEqual([4]);
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

  it('tells whether the worker has a long poll parked here (then no other replica needs word)', async () => {
    const w = new Wakeups();
    expect(w.post('w1', [assignment(1)])).toBe(false);
    const parked = w.waitWorker('w1', 5000);
    expect(w.post('w1', [assignment(2)])).toBe(true);
    await parked.promise;
    // The woken poll is gone: the next post finds none parked.
    expect(w.post('w1', [assignment(3)])).toBe(false);
    expect(w.post('w2', [assignment(4)])).toBe(false);
  });

  it('counts wakes for anything but fresh mail', () => {
    const w = new Wakeups();
    expect(w.nudges('w1')).toBe(0);
    w.post('w1', [assignment(1)]);
    expect(w.nudges('w1')).toBe(0);
    w.wakeWorker('w1'); // a cancel, a drain, runs placed by another replica
    expect(w.nudges('w1')).toBe(1);
    const parked = w.waitWorker('w2', 1000);
    w.wakeAllWorkers();
    expect(w.nudges('w2')).toBe(1);
    parked.cancel();
  });

  it('mail from the pass a report-and-poll waits for does not wake the parked poll; leftovers do at release', async () => {
    const w = new Wakeups();
    let woke = 0;
    const park = () => {
      const p = w.waitWorker('w1', 5000);
      void p.promise.then(() => woke++);
      return p;
    };
    let parked = park();
    const release = w.claimMail('w1', 7);
    w.post('w1', [assignment(1)], Date.now(), 6); // an earlier pass: not the claimant's
    await Promise.resolve();
    expect(woke).toBe(1);
    w.takeMail('w1', 10);
    parked = park();
    w.post('w1', [assignment(2)], Date.now(), 7); // the claimant's pass
    await Promise.resolve();
    expect(woke).toBe(1);
    // The claimant took one run only (no room for more): what is left wakes the parked poll.
    w.post('w1', [assignment(3)], Date.now(), 7);
    expect(w.takeMail('w1', 1).map((a) => a.run.id)).toEqual([2]);
    release();
    await Promise.resolve();
    expect(woke).toBe(2);
    release(); // twice is a no-op
    parked.cancel();
  });
});

// In-process wake-ups: long-polling workers and log followers sleep here until something happens that
// concerns them, so that a submit, a cancel or a drain reaches a worker in milliseconds without polling
// the database. Across replicas (cluster mode) a notifier feeds the same hub from LISTEN/NOTIFY.

import type { Assignment } from '../store/port.js';

type Waiter = () => void;

/** Assignments handed over in memory are only good for a moment: after that the store is the truth. */
const MAIL_TTL_MS = 2000;
const NONE: ReadonlySet<number> = new Set();

export class Wakeups {
  private workers = new Map<string, Set<Waiter>>();
  private runLogs = new Map<number, Set<Waiter>>();
  private anyWorker = new Set<Waiter>();
  private mail = new Map<string, Array<{ a: Assignment; at: number }>>();
  private mailed = new Map<string, number[]>();
  private marking = new Map<string, Set<number>>();
  private nudged = new Map<string, number>();
  private claims = new Map<string, number[]>();
  private takenFromStore = new Map<string, Set<number>>();
  private handedOut = new Map<string, Set<number>>();

  /**
   * The scheduler hands new assignments to a worker's parked poll on this replica directly, sparing the poll
   * a store round trip. The store still holds them (not yet marked delivered): a poll on another replica,
   * or after this mail expired, takes them from there; the agent ignores a run it already has.
   * Returns whether a long poll of this worker is parked here: a worker keeps one long poll at a time, so
   * then no other replica holds one to wake (the scheduling loop tells the other replicas of the others only).
   */
  post(workerId: string, items: Assignment[], now = Date.now(), pass?: number): boolean {
    const parked = (this.workers.get(workerId)?.size ?? 0) > 0;
    const taken = this.takenFromStore.get(workerId);
    const fresh = taken ? items.filter((a) => !taken.has(a.run.id)) : items;
    if (fresh.length === 0) {
      this.wakeWorker(workerId);
      return parked;
    }
    const box = this.mail.get(workerId) ?? [];
    for (const a of fresh) box.push({ a, at: now });
    this.mail.set(workerId, box);
    // A report-and-poll of this worker that waits for this pass takes the mail when the pass ends: waking
    // the parked poll too would only race it for the mail (and cost the worker another poll).
    const claimed = pass !== undefined && (this.claims.get(workerId) ?? []).some((t) => t <= pass);
    if (!claimed) this.fire(this.workers, workerId);
    return parked;
  }

  /** Up to `max` fresh mailed assignments; remembers them until the next store poll marks them delivered. */
  takeMail(workerId: string, max: number, now = Date.now()): Assignment[] {
    const box = this.mail.get(workerId);
    if (!box) return [];
    const fresh = box.filter((m) => now - m.at <= MAIL_TTL_MS);
    const out = fresh.slice(0, max).map((m) => m.a);
    const rest = fresh.slice(max);
    if (rest.length > 0) this.mail.set(workerId, rest);
    else this.mail.delete(workerId);
    if (out.length > 0) {
      const ids = out.map((a) => a.run.id);
      this.mailed.set(workerId, [...(this.mailed.get(workerId) ?? []), ...ids]);
      this.remember(this.handedOut, workerId, ids);
    }
    return out;
  }

  /**
   * A poll took these runs from the store: drop them from the mail, and keep them out of mail posted a
   * moment later (the scheduler may post after the poll already found its runs in the store). Returns the
   * runs of the list that another poll of this worker already took from the mail. The other order happens
   * too: the pass that placed a run is answered first (its commit came first) and posts it, a parked poll
   * hands it out, and only then is the store write that also took it answered, perhaps together with the
   * worker's report of that very run. Handed out again after that report's ack, the run would start a
   * second time: the worker no longer holds it.
   */
  takenFromStoreNow(workerId: string, runIds: number[]): ReadonlySet<number> {
    if (runIds.length === 0) return NONE;
    const ids = new Set(runIds);
    const box = this.mail.get(workerId);
    if (box) {
      const rest = box.filter((m) => !ids.has(m.a.run.id));
      if (rest.length > 0) this.mail.set(workerId, rest);
      else this.mail.delete(workerId);
    }
    this.remember(this.takenFromStore, workerId, runIds);
    const handed = this.handedOut.get(workerId);
    if (!handed) return NONE;
    const dup = new Set(runIds.filter((r) => handed.has(r)));
    return dup.size > 0 ? dup : NONE;
  }

  /** Tombstones only matter for the moment a post can lag a poll, or a poll's store write a post. */
  private remember(map: Map<string, Set<number>>, workerId: string, ids: number[]): void {
    const set = map.get(workerId) ?? new Set<number>();
    for (const id of ids) set.add(id);
    map.set(workerId, set);
    setTimeout(() => {
      const t = map.get(workerId);
      if (!t) return;
      for (const id of ids) t.delete(id);
      if (t.size === 0) map.delete(workerId);
    }, MAIL_TTL_MS).unref();
  }

  /**
   * A report-and-poll of this worker will take the mail once scheduling pass `pass` (or a later one) has
   * ended: mail posted by such a pass does not wake its parked poll. Call the returned release once the
   * request has taken its mail, or failed; mail still waiting then wakes the parked poll.
   */
  claimMail(workerId: string, pass: number): () => void {
    const list = this.claims.get(workerId) ?? [];
    list.push(pass);
    this.claims.set(workerId, list);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const rest = this.claims.get(workerId) ?? [];
      const at = rest.indexOf(pass);
      if (at >= 0) rest.splice(at, 1);
      if (rest.length === 0) this.claims.delete(workerId);
      if (this.mailCount(workerId) > 0) this.fire(this.workers, workerId);
    };
  }

  /** How many assignments wait in this worker's mail (fresh or not): a bound for a look at the store. */
  mailCount(workerId: string): number {
    return this.mail.get(workerId)?.length ?? 0;
  }

  /**
   * Runs handed out from memory whose delivered mark is not committed yet, including marks a write is
   * carrying now: a poll must not take them from the store again (it would wait on a write of its own to
   * learn that they are gone).
   */
  pendingMailed(workerId: string): number[] {
    const mailed = this.mailed.get(workerId) ?? [];
    const marking = this.marking.get(workerId);
    return marking ? [...mailed, ...marking] : mailed;
  }

  /** Runs handed out from memory since the last call, for a write to mark delivered; then call `marked`. */
  takeMailed(workerId: string): number[] {
    const ids = this.mailed.get(workerId) ?? [];
    this.mailed.delete(workerId);
    if (ids.length > 0) {
      const set = this.marking.get(workerId) ?? new Set<number>();
      for (const id of ids) set.add(id);
      this.marking.set(workerId, set);
    }
    return ids;
  }

  /** The write carrying these marks has ended: committed, or not (then the next write carries them). */
  marked(workerId: string, ids: number[], committed: boolean): void {
    if (ids.length === 0) return;
    const set = this.marking.get(workerId);
    if (set) {
      for (const id of ids) set.delete(id);
      if (set.size === 0) this.marking.delete(workerId);
    }
    if (!committed) this.mailed.set(workerId, [...(this.mailed.get(workerId) ?? []), ...ids]);
  }

  /** Resolves when the worker is woken or the timeout passes; `signal` ends it early. */
  waitWorker(workerId: string, timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
    return this.wait(this.workers, workerId, timeoutMs);
  }

  /** A wake for anything but fresh mail (a cancel, a drain, runs placed by another replica): see nudges. */
  wakeWorker(workerId: string): void {
    this.nudged.set(workerId, (this.nudged.get(workerId) ?? 0) + 1);
    this.fire(this.workers, workerId);
  }

  /**
   * How many times this worker was woken for anything but fresh mail. While the count stays the same, what a
   * parked poll last read of the store (the worker's state, its cancels, runs placed elsewhere) still holds:
   * a wake for mail needs no new read.
   */
  nudges(workerId: string): number {
    return this.nudged.get(workerId) ?? 0;
  }

  wakeAllWorkers(): void {
    for (const id of [...this.workers.keys()]) this.wakeWorker(id);
    for (const w of [...this.anyWorker]) w();
  }

  waitLogs(runId: number, timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
    return this.wait(this.runLogs, runId, timeoutMs);
  }

  wakeLogs(runId: number): void {
    this.fire(this.runLogs, runId);
  }

  private wait<K>(map: Map<K, Set<Waiter>>, key: K, timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
    let done: Waiter = () => {};
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<void>((resolve) => {
      done = () => {
        if (timer) clearTimeout(timer);
        const set = map.get(key);
        if (set) {
          set.delete(done);
          if (set.size === 0) map.delete(key);
        }
        resolve();
      };
      let set = map.get(key);
      if (!set) {
        set = new Set();
        map.set(key, set);
      }
      set.add(done);
      timer = setTimeout(done, timeoutMs);
    });
    return { promise, cancel: () => done() };
  }

  private fire<K>(map: Map<K, Set<Waiter>>, key: K): void {
    const set = map.get(key);
    if (!set) return;
    for (const w of [...set]) w();
  }
}

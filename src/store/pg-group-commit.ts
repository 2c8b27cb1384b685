// Group commit on PostgreSQL. Every statement is a network round trip, and a transaction of its own adds
// BEGIN and COMMIT (two more, and a WAL flush) to each store operation. Write transactions queued while a
// batch runs are therefore run together in ONE transaction on one connection, answered only after its
// COMMIT, so "accepted means durable" still holds.
//
// Optimistic, without savepoints (each would cost two more round trips per operation): when an operation
// throws, the batch is rolled back; the operations before it run again as a batch, the failing one alone
// in a transaction of its own (with the deadlock retries of a single transaction), and the ones after it
// as a batch. Operations are rerunnable already (a deadlock reruns them), so they may run twice; only the
// committed run counts.
//
// One batch at a time: transactions then commit in the order they were queued, so a scheduling pass queued
// right behind a write sees it (kickAfter) and shares its commit, as on SQLite. Two batches on two
// connections could also lock rows in crossing orders; one batch cannot deadlock with itself.
//
// The batch runs on a pooled pg client of its own (PostgresBackend.onClient), not through Kysely's
// single-connection provider, which runs one statement at a time: the connection is in pipeline mode
// (postgres.ts), so statements an op sends together (independent reads under Promise.all) and the BEGIN
// before the first one share a round trip. Ops are pipelined too: once an op has sent its last statement
// (Exec.last: a submit's insert, a report's worker update), the next op starts and its statements go out
// behind it; they still run after it on the server, so the next op sees its writes. COMMIT goes out behind the
// batch's last statement only once every op before it has answered or has ended with `final` (nothing of it
// can fail after), so an op may still throw after its `last` statement.
//
// An op marked early (TxOptions.early: the scheduling pass a worker's results kick) starts sooner still: as
// soon as the op ahead has sent its reads (Exec.readsSent), before its writes. Its reads then run before
// those writes, so it learns from Exec.endedAhead which runs they end, and it writes only after every op
// ahead has sent its last statement. A report and its pass then take two round trips instead of three.

import type { Exec } from './backend.js';

export interface QueuedTx {
  fn: (ex: Exec) => Promise<unknown>;
  /** May start once the op ahead has sent its reads (see TxOptions.early). */
  early: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** fn threw after its final statement, and its transaction had already committed (see Exec.final). */
export class CommittedThenFailed extends Error {
  constructor(readonly error: unknown) {
    super(`store: the transaction committed, then its operation failed: ${String(error)}`);
  }
}

/** Most operations in one transaction: bounds how long the first one's row locks are held. */
const MAX_BATCH = 200;

/** Thrown inside a batch's transaction to roll it back and say which op failed. */
class OpFailed {
  constructor(
    readonly index: number,
    readonly error: unknown,
  ) {}
}

/** The batch committed; or the op at `index` threw (rolled back); or the transaction itself failed. */
type Attempt = { ok: true } | { ok: false; index: number } | { ok: false; index: null; error: unknown };

export class PgGroupCommit {
  private queue: QueuedTx[] = [];
  private flushing = false;
  /**
   * tx: transactions answered; batches: shared transactions; alone: ops run in one of their own; early:
   * COMMITs sent behind a final statement (Exec.final), before its answer; overtakes: early ops started
   * before the op ahead had sent its last statement.
   */
  static stats = { tx: 0, batches: 0, alone: 0, splits: 0, early: 0, overtakes: 0 };

  /**
   * @param once runs one function in one transaction on a connection of its own (pipelined), no retries
   * @param alone runs one function in a transaction of its own, rerun on deadlock
   * @param retryable whether a failed COMMIT left nothing behind and may be rerun
   */
  constructor(
    private readonly once: <T>(fn: (ex: Exec) => Promise<T>) => Promise<T>,
    private readonly alone: <T>(fn: (ex: Exec) => Promise<T>) => Promise<T>,
    private readonly retryable: (e: unknown) => boolean,
  ) {}

  run<T>(fn: (ex: Exec) => Promise<T>, early = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, early, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushing) {
        this.flushing = true;
        // On the next turn: whatever is queued in this one (a write and the pass it kicks) shares the batch.
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        await this.runInOrder(this.queue.splice(0, MAX_BATCH));
        // One turn of the event loop before the next batch: the answers just given queue their follow-ups
        // (the scheduling pass that writes during this batch kicked) through many promise hops, and
        // requests read meanwhile queue theirs; taken at once, the next batch would hold a write without
        // the pass it kicked, and that pass would need a commit of its own.
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    }
  }

  /** Runs `ops` in queue order, in as few transactions as their failures allow; answers each. */
  private async runInOrder(ops: QueuedTx[]): Promise<void> {
    if (ops.length === 0) return;
    if (ops.length === 1) return this.runAlone(ops[0]!);
    const r = await this.attempt(ops);
    if (r.ok) return;
    PgGroupCommit.stats.splits++;
    if (r.index === null) {
      // The connection, BEGIN, ROLLBACK or COMMIT failed. A serialization failure or deadlock left nothing
      // behind and is rerun; anything else (the database away, a connection lost, perhaps while committing)
      // is every op's answer, as it would have been for each alone.
      if (!this.retryable(r.error)) for (const op of ops) op.reject(r.error);
      else for (const op of ops) await this.runAlone(op);
      return;
    }
    await this.runInOrder(ops.slice(0, r.index));
    await this.runAlone(ops[r.index]!);
    await this.runInOrder(ops.slice(r.index + 1));
  }

  private async runAlone(op: QueuedTx): Promise<void> {
    PgGroupCommit.stats.tx++;
    PgGroupCommit.stats.alone++;
    try {
      // The same rule as in a batch: nothing after an op's last statement.
      op.resolve(await this.alone((ex) => op.fn(batchExec(ex, ALONE))));
    } catch (e) {
      op.reject(e instanceof CommittedThenFailed ? e.error : e);
    }
  }

  /** One transaction for every op; on success answers them all after COMMIT. */
  private async attempt(ops: QueuedTx[]): Promise<Attempt> {
    PgGroupCommit.stats.batches++;
    const values: unknown[] = new Array(ops.length);
    // Per op: answered; ended with `final` (nothing of it can fail after its last statement); the runs it ends.
    const answered: boolean[] = new Array(ops.length).fill(false);
    const finalSent: boolean[] = new Array(ops.length).fill(false);
    const ending: number[][] = ops.map(() => []);
    const errors: unknown[] = new Array(ops.length);
    let r: Attempt;
    try {
      await this.once(async (ex) => {
        // Each op runs until it has sent its last statement (Exec.last) or ended; the next one starts then,
        // its statements pipelined behind (an early op sooner: once the op ahead has sent its reads).
        const running: Array<Promise<void>> = [];
        let failed = false;
        // Settles once every op started so far has sent its last statement or ended.
        let aheadSent: Promise<unknown> = Promise.resolve();
        for (const [index, op] of ops.entries()) {
          let sentLast!: () => void;
          const lastSent = new Promise<void>((res) => {
            sentLast = res;
          });
          let sentReads!: () => void;
          const readsSent = new Promise<void>((res) => {
            sentReads = res;
          });
          const ahead = aheadSent;
          const step: OpStep = {
            sentLast: (final) => {
              finalSent[index] = final;
              sentLast();
            },
            sentReads,
            ending: (runIds) => ending[index]!.push(...runIds),
            endedAhead: () => ahead.then(() => ending.slice(0, index).flat()),
            // COMMIT may follow the batch's last op's final statement at once if no op before it can still
            // fail: each has answered, or has sent a final statement (its failure then aborts the transaction,
            // and PostgreSQL answers that COMMIT with a rollback).
            mayCommit: () => index === ops.length - 1 && answered.every((a, i) => i >= index || a || finalSent[i]),
          };
          const p = op.fn(batchExec(ex, step)).then(
            (v) => {
              values[index] = v;
              answered[index] = true;
            },
            (e: unknown) => {
              failed = true;
              errors[index] = e;
              // Its own error comes back when it runs again alone.
              throw new OpFailed(index, e);
            },
          );
          const settled = p.catch(() => {});
          running.push(p);
          aheadSent = Promise.all([ahead, Promise.race([lastSent, settled])]);
          const next = ops[index + 1];
          const overtaken = next?.early ? readsSent.then(() => 'reads' as const) : null;
          const why = await Promise.race([lastSent, settled, ...(overtaken ? [overtaken] : [])]);
          if (why === 'reads') PgGroupCommit.stats.overtakes++;
          if (failed) break;
        }
        // Every op settles before the transaction ends: none may send a statement after ROLLBACK or COMMIT.
        // Then, in queue order, the first op that failed is the one to run alone (those behind it may have
        // failed only because it aborted the transaction).
        await Promise.allSettled(running);
        for (const p of running) await p;
      });
      r = { ok: true };
    } catch (error) {
      if (error instanceof CommittedThenFailed && error.error instanceof OpFailed) {
        // An op threw after its final statement, once COMMIT had gone out (Exec.final forbids this): all of the
        // batch is durable, and the op's error is its answer; every other op has settled by then.
        PgGroupCommit.stats.tx += ops.length;
        for (const [i, op] of ops.entries()) answered[i] ? op.resolve(values[i]) : op.reject(errors[i]);
        return { ok: true };
      }
      // An op threw (rolled back); or BEGIN, ROLLBACK or COMMIT failed, or the connection did: every op's
      // answer then, unless retryable (see runInOrder).
      r = error instanceof OpFailed ? { ok: false, index: error.index } : { ok: false, index: null, error };
    }
    if (r.ok) {
      PgGroupCommit.stats.tx += ops.length;
      for (const [i, op] of ops.entries()) op.resolve(values[i]);
    }
    return r;
  }
}

/** What one op of a batch tells the batch, and asks of it (see batchExec). */
interface OpStep {
  /** The op has sent its last statement; `final`: nothing of it can fail after. */
  sentLast(final: boolean): void;
  sentReads(): void;
  ending(runIds: number[]): void;
  endedAhead(): Promise<number[]>;
  /** Whether COMMIT may go out right behind this op's final statement. */
  mayCommit(): boolean;
}

/** An op in a transaction of its own: nothing ahead of it, nothing behind it. */
const ALONE: OpStep = {
  sentLast: () => {},
  sentReads: () => {},
  ending: () => {},
  endedAhead: () => Promise.resolve([]),
  mayCommit: () => true,
};

/**
 * `ex` for one op of a batch: `last` reports that the op has sent its last statement; nothing may follow.
 * `final` is `last`, with COMMIT sent right behind it when `step.mayCommit` says the op ends the batch.
 */
function batchExec(ex: Exec, step: OpStep): Exec {
  let done = false;
  const after = () => Promise.reject(new Error("store: a statement sent after the operation's last one"));
  const lastStatement =
    (final: boolean) =>
    <T>(sql: string, params?: unknown[]) => {
      if (done) return after();
      done = true;
      const rows = final && step.mayCommit() ? ex.final<T>(sql, params) : ex.all<T>(sql, params);
      step.sentLast(final);
      return rows;
    };
  return {
    all: <T>(sql: string, params?: unknown[]) => (done ? after() : ex.all<T>(sql, params)),
    last: lastStatement(false),
    final: lastStatement(true),
    readsSent: step.sentReads,
    ending: step.ending,
    endedAhead: step.endedAhead,
  };
}

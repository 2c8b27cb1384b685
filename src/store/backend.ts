// The thin SQL seam under the store: one `Exec` that runs a statement with `?` placeholders, and a `Backend`
// that runs a function in one transaction. Kysely owns the connections (its SQLite mutex, its pg pool);
// the store's semantics are written once, in kysely-store.ts, against this seam.

import type { Writable } from 'node:stream';
import type Database from 'better-sqlite3';
import { CompiledQuery, Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type pg from 'pg';
import { CommittedThenFailed, PgGroupCommit } from './pg-group-commit.js';

export type Row = Record<string, unknown>;

export interface Exec {
  /** Runs one statement; returns its rows (or [] when it returns none). Placeholders are `?`. */
  all<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
  /**
   * Runs the operation's last statement. In a PostgreSQL group-commit batch the next operation's statements
   * then go out right behind it (pipelined: they still run after it, in the same transaction) instead of
   * after its answer: one round trip fewer per operation. The operation must send nothing after it; it may
   * still throw (the batch is then rolled back as usual). Elsewhere it is `all`.
   */
  last<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
  /**
   * Like `last`, and nothing of the operation can fail after it (its answer is only read): on PostgreSQL,
   * when it is the transaction's last statement, COMMIT goes out right behind it instead of after its
   * answer, one round trip fewer. Should the statement fail, PostgreSQL answers that COMMIT with a rollback
   * and the operation fails as usual. Elsewhere it is `all`.
   */
  final<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
  /**
   * In a PostgreSQL group-commit batch: the operation has sent the reads its writes depend on, and an early
   * operation queued behind it (TxOptions.early) may start now, its reads running before this one's writes.
   * Absent elsewhere.
   */
  readsSent?(): void;
  /** Names runs this operation ends, before it sends the writes that end them (see endedAhead). */
  ending?(runIds: number[]): void;
  /**
   * For an early operation: resolves once every operation ahead of it in the batch has sent its last
   * statement (or ended), with the runs they end (Exec.ending), which its own reads may have seen still live.
   * Its writes go out after this, behind theirs. Absent outside a batch.
   */
  endedAhead?(): Promise<number[]>;
}

/** An Exec whose `last` and `final` are its `all`. */
export function execOf(all: Exec['all']): Exec {
  return { all, last: all, final: all };
}

export interface TxOptions {
  /**
   * A transaction of its own, never shared: for session state (SET LOCAL) and for locks taken out of the
   * usual order (the leader row FOR UPDATE), which inside a shared batch could close a cycle with another
   * replica's batch. SQLite ignores it: one writer at a time, and each op has its own savepoint.
   */
  alone?: boolean;
  /**
   * May start before the operation ahead has sent its writes, once it has sent its reads (Exec.readsSent;
   * PostgreSQL group commit only): one round trip fewer. The operation must then wait for Exec.endedAhead
   * before it writes, and allow for the runs it names. Ignored elsewhere.
   */
  early?: boolean;
}

export interface Backend {
  readonly kind: 'sqlite' | 'postgres';
  readonly kysely: Kysely<Record<string, never>>;
  /** Primary key type of integer ids in DDL. */
  readonly idType: string;
  /** Row-lock suffix for SELECTs that precede writes (empty on SQLite, where BEGIN IMMEDIATE serialises writers). */
  readonly forUpdate: string;
  /**
   * Runs `fn` in a write transaction, shared with others queued meanwhile (group commit) unless `alone`.
   * `fn` may run more than once (a deadlock, another op of its batch failing): only a committed run counts,
   * so it must change nothing but the database.
   */
  tx<T>(fn: (ex: Exec) => Promise<T>, opts?: TxOptions): Promise<T>;
  read<T>(fn: (ex: Exec) => Promise<T>): Promise<T>;
  now(): Promise<number>;
  /** Called first inside the migration transaction: takes the migration lock, creates the schema. */
  migrationPrelude(ex: Exec): Promise<void>;
  close(): Promise<void>;
}

/** Per-statement counts and time, for bench work (TSCHED_BENCH_STATS; see bench/servers); off otherwise. */
export let statementStats: Map<string, { n: number; ms: number }> | undefined;
export function countStatements(on: boolean): void {
  statementStats = on ? new Map() : undefined;
}
function countStatement(sql: string, ms: number): void {
  const key = sql.replace(/\(\?(, ?\?)*\)(, ?\(\?(, ?\?)*\))*/g, '(…)').slice(0, 160);
  const e = statementStats!.get(key) ?? { n: 0, ms: 0 };
  e.n++;
  e.ms += ms;
  statementStats!.set(key, e);
}

/**
 * Prepared statements kept per connection, least recently used dropped first. Batched statements have a
 * text per list length (`IN (?, ?, …)`, multi-row `VALUES`), so a worker reporting 1 to 50 results at a
 * time brings hundreds of texts: 641 in the real-execution benchmark, where 400 kept in insertion order
 * re-prepared 810 of them (~0.2 ms each).
 */
const STMT_CACHE = 1000;

interface Prepared {
  exec(params: unknown[]): unknown[];
}

/**
 * `LIMIT ?` is prepared as `LIMIT +?`: SQLite's planner reads a bound LIMIT's value, which marks the
 * statement to be prepared again whenever that parameter is bound, so every run of a cached statement with
 * `LIMIT ?` re-parsed and re-planned it (the candidate walk 60 → 37 µs, the undelivered-runs look 11 → 3.6
 * µs; 3 % of the server's CPU at 1,000 submits/s). Behind a unary plus the value is an expression the
 * planner leaves alone; the store's plans are the same either way (index walks that stop at the limit).
 */
const BOUND_LIMIT = /LIMIT \?/g;

/** The text SQLite prepares for one of the store's statements (see BOUND_LIMIT). */
export function sqliteText(sql: string): string {
  return sql.replaceAll(BOUND_LIMIT, 'LIMIT +?');
}

/**
 * A cached statement. Rows are read in better-sqlite3's raw mode (arrays) and turned into objects by a
 * constructor compiled once per statement: half the cost of letting the driver build each object (64 task
 * rows of ~45 columns: 600 → 290 µs). Later columns of the same name win, as in the driver's object mode.
 */
function prepare(db: Database.Database, sql: string): Prepared {
  const st = db.prepare(sqliteText(sql));
  if (!st.reader) {
    return {
      exec: (params) => {
        st.run(params);
        return [];
      },
    };
  }
  st.raw(true);
  const names = st.columns().map((c) => c.name);
  const row = new Function('a', `return {${names.map((n, i) => `${JSON.stringify(n)}: a[${i}]`).join(', ')}};`) as (
    a: unknown[],
  ) => Record<string, unknown>;
  return { exec: (params) => (st.all(params) as unknown[][]).map(row) };
}
/** A flush this soon after the previous one means the server is busy (ms). */
const BUSY_GAP_MS = 2;
/** How long a busy server lets transactions gather before the next group commit (ms). */
const COMMIT_DELAY_MS = 1;
/**
 * The delay applies only after a flush of at least this many transactions. A request's write and the
 * scheduling pass it kicked (a worker's report, a submit) always share a flush: two transactions are one
 * request's work, and a worker waiting on that answer is a serial pipeline that waiting only slows down
 * (the throughput drain: 9,300 -> 11,400 completions/s without that wait).
 */
const COMMIT_DELAY_MIN_BATCH = 3;
/** How often the PostgreSQL clock offset is measured again, ms. */
const CLOCK_REFRESH_MS = 5000;

export class SqliteBackend implements Backend {
  readonly kind = 'sqlite';
  readonly kysely: Kysely<Record<string, never>>;
  readonly idType = 'INTEGER PRIMARY KEY AUTOINCREMENT';
  readonly forUpdate = '';
  private readonly stmts = new Map<string, Prepared>();
  private readonly exec: Exec;

  /** Handles sharing this connection (see sqlite.ts); the last close() closes it. */
  refs = 1;
  onClose: () => void = () => {};

  constructor(
    readonly raw: Database.Database,
    private readonly busyTimeoutMs = 5000,
  ) {
    this.kysely = new Kysely({ dialect: new SqliteDialect({ database: raw }) });
    // better-sqlite3 is synchronous: run cached prepared statements directly (Kysely's driver re-prepares each call).
    this.exec = execOf(async <T>(sql: string, params: unknown[] = []) => this.run(sql, params) as T[]);
  }

  private run(sql: string, params: unknown[]): unknown[] {
    let p = this.stmts.get(sql);
    if (p) {
      // Most recently used last: the first key is the one to drop.
      this.stmts.delete(sql);
      this.stmts.set(sql, p);
    } else {
      p = prepare(this.raw, sql);
      SqliteBackend.stats.prepares++;
      if (this.stmts.size >= STMT_CACHE) this.stmts.delete(this.stmts.keys().next().value as string);
      this.stmts.set(sql, p);
    }
    if (!statementStats) return p.exec(params);
    const t0 = performance.now();
    const out = p.exec(params);
    countStatement(sql, performance.now() - t0);
    return out;
  }

  // Group commit. Every write transaction is queued; one flush runs all that queued up meanwhile inside a
  // single BEGIN IMMEDIATE … COMMIT, each in its own SAVEPOINT so that one failing operation rolls back
  // alone. Callers are answered only after the COMMIT, so "accepted means durable" still holds, but the
  // fsync that synchronous=FULL costs is paid once per batch instead of once per operation — the difference
  // between hundreds and tens of thousands of small transactions a second.
  // Kysely's connection() holds its SQLite mutex, so no read interleaves on the one connection between our
  // awaits; BEGIN IMMEDIATE takes the write lock up front (no deferred-upgrade SQLITE_BUSY).
  private queue: Array<{ fn: (ex: Exec) => Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];
  private flushing = false;

  tx<T>(fn: (ex: Exec) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushing) {
        this.flushing = true;
        this.scheduleFlush();
      }
    });
  }

  /** tx: transactions; flushes: group commits; commitMs: time in COMMIT; prepares: statements prepared. */
  static stats = { tx: 0, flushes: 0, commitMs: 0, opMs: 0, prepares: 0 };
  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, 1000);
        this.lastFlushSize = batch.length;
        SqliteBackend.stats.flushes++;
        SqliteBackend.stats.tx += batch.length;
        const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
        try {
          await this.kysely.connection().execute(async () => {
            await this.begin();
            try {
              for (const op of batch) {
                this.raw.exec('SAVEPOINT op');
                try {
                  const value = await op.fn(this.exec);
                  this.raw.exec('RELEASE op');
                  results.push({ ok: true, value });
                } catch (error) {
                  this.raw.exec('ROLLBACK TO op');
                  this.raw.exec('RELEASE op');
                  results.push({ ok: false, error });
                }
              }
              const c0 = performance.now();
              this.raw.exec('COMMIT');
              SqliteBackend.stats.commitMs += performance.now() - c0;
            } catch (e) {
              if (this.raw.inTransaction) this.raw.exec('ROLLBACK');
              throw e;
            }
          });
        } catch (e) {
          // BEGIN or COMMIT failed: nothing of the batch is durable.
          for (const op of batch) op.reject(e);
          continue;
        }
        batch.forEach((op, i) => {
          const r = results[i]!;
          if (r.ok) op.resolve(r.value);
          else op.reject(r.error);
        });
      }
    } finally {
      this.flushing = false;
      this.lastFlushAt = performance.now();
      if (this.queue.length > 0) {
        this.flushing = true;
        this.scheduleFlush();
      }
    }
  }

  // Like PostgreSQL's commit_delay: when commits come back to back (a busy server), wait a moment so that
  // the next flush gathers more transactions behind one fsync; an idle server flushes at once.
  // A serial pipeline (one request at a time) gains nothing from waiting, so the delay applies only when
  // the last flush already carried the work of several requests (COMMIT_DELAY_MIN_BATCH).
  private lastFlushAt = 0;
  private lastFlushSize = 0;
  private scheduleFlush(): void {
    if (this.lastFlushSize >= COMMIT_DELAY_MIN_BATCH && performance.now() - this.lastFlushAt < BUSY_GAP_MS)
      setTimeout(() => void this.flush(), COMMIT_DELAY_MS);
    else setImmediate(() => void this.flush());
  }

  /**
   * BEGIN IMMEDIATE, waiting for another process's write lock without blocking the event loop: the
   * connection's busy_timeout is 0 and we retry here, so a lock holder in this same process can progress.
   */
  private async begin(): Promise<void> {
    const deadline = Date.now() + this.busyTimeoutMs;
    for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
      try {
        this.raw.exec('BEGIN IMMEDIATE');
        return;
      } catch (e) {
        if ((e as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() >= deadline) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  read<T>(fn: (ex: Exec) => Promise<T>): Promise<T> {
    return this.kysely.connection().execute(() => fn(this.exec));
  }

  async now(): Promise<number> {
    return Date.now();
  }

  async migrationPrelude(): Promise<void> {}

  async close(): Promise<void> {
    if (--this.refs > 0) return;
    this.onClose();
    await this.kysely.destroy(); // closes the better-sqlite3 handle
  }
}

const pgTextCache = new Map<string, string>();
/** `?` → `$n`. Our SQL never contains a literal `?`. */
function toPg(sql: string): string {
  let out = pgTextCache.get(sql);
  if (out === undefined) {
    let n = 0;
    out = sql.replace(/\?/g, () => `$${++n}`);
    if (pgTextCache.size > 2000) pgTextCache.clear();
    pgTextCache.set(sql, out);
  }
  return out;
}

/**
 * Array parameters as PostgreSQL array literals, written here rather than by pg: the batched writes send
 * one array per column (unnest), and pg quotes and regex-escapes every element of every array (6 % of the
 * server's CPU at 1,000 submits/s). Numbers need no quotes; a string is quoted, and escaped only if it
 * holds a quote or a backslash. An array of anything else (nested, buffers, dates, objects) is left to pg.
 */
export function pgParams(params: unknown[]): unknown[] {
  let out: unknown[] | null = null;
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (!Array.isArray(p)) continue;
    const literal = pgArrayLiteral(p);
    if (literal === null) continue;
    out ??= params.slice();
    out[i] = literal;
  }
  return out ?? params;
}

/** A string as an array element's quoted body: `"` and `\` escaped. */
function arrayElementBody(v: string): string {
  // indexOf and replaceAll, not a regex with a replacement pattern: 40 % less time on the JSON columns of a
  // task insert, where every string has quotes.
  if (v.indexOf('"') === -1 && v.indexOf('\\') === -1) return v;
  return v.replaceAll('\\', '\\\\').replaceAll('"', '\\"');
}

/** `{1,"a b",NULL}` for a flat array of numbers, bigints, booleans, strings and nulls; null otherwise. */
export function pgArrayLiteral(items: readonly unknown[]): string | null {
  let out = '{';
  for (let i = 0; i < items.length; i++) {
    if (i > 0) out += ',';
    const v = items[i];
    if (v === null || v === undefined) out += 'NULL';
    else if (typeof v === 'number' || typeof v === 'bigint') out += String(v);
    else if (typeof v === 'string') out += `"${arrayElementBody(v)}"`;
    else if (typeof v === 'boolean') out += v ? 'true' : 'false';
    else return null;
  }
  return `${out}}`;
}

// Deadlock detected, serialization failure, and feature_not_supported: the one the store can meet is "cached
// plan must not change result type", when another replica's migration reshaped a table under a prepared
// statement; postgres.ts then stops preparing such statements, so the rerun succeeds.
// ROLLED_BACK_AT_COMMIT (ours): nothing was kept, so the work may run again.
const ROLLED_BACK_AT_COMMIT = 'TSCHED_ROLLED_BACK';
const RETRYABLE_PG = new Set(['40P01', '40001', '0A000', ROLLED_BACK_AT_COMMIT]);

/**
 * Holds a connection's writes until the end of this tick: statements sent together (a transaction's BEGIN and
 * its first reads, an op's last statement and the next op's) leave in one write() instead of one each. pg
 * corks the socket around each statement's messages; this cork spans them. Each write wakes the PostgreSQL
 * backend, which on a small machine preempts the server, and a pipelined round trip sends up to five.
 */
function coalesceWrites(client: pg.PoolClient): void {
  // pg keeps the socket on the client's connection (not in its typings).
  const socket = (client as unknown as { connection?: { stream?: Writable } }).connection?.stream;
  if (!socket || socket.writableCorked > 0 || typeof socket.cork !== 'function') return;
  socket.cork();
  process.nextTick(() => socket.uncork());
}

/** COMMIT answered with a rollback: a statement had failed without its operation seeing it. Nothing is kept. */
class RolledBackAtCommit extends Error {
  readonly code = ROLLED_BACK_AT_COMMIT;
  constructor() {
    super('store: the transaction was rolled back at COMMIT (a statement in it had failed)');
  }
}

export class PostgresBackend implements Backend {
  readonly kind = 'postgres';
  readonly kysely: Kysely<Record<string, never>>;
  readonly idType = 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY';
  readonly forUpdate = ' FOR UPDATE';
  private readonly exec: Exec;
  private readonly group: PgGroupCommit;

  constructor(
    readonly pool: pg.Pool,
    readonly schema: string,
  ) {
    this.kysely = new Kysely({ dialect: new PostgresDialect({ pool }) });
    this.exec = PostgresBackend.execOf(this.kysely);
    this.group = new PgGroupCommit(
      (fn) => this.onClient(fn),
      (fn) => this.txAlone(fn),
      (e) => RETRYABLE_PG.has((e as { code?: string }).code ?? ''),
    );
  }

  private static execOf(k: Kysely<Record<string, never>>): Exec {
    return execOf(async <T>(sql: string, params: unknown[] = []) => {
      if (!statementStats) return (await k.executeQuery(CompiledQuery.raw(toPg(sql), pgParams(params)))).rows as T[];
      const t0 = performance.now();
      const rows = (await k.executeQuery(CompiledQuery.raw(toPg(sql), pgParams(params)))).rows as T[];
      countStatement(sql, performance.now() - t0);
      return rows;
    });
  }

  /**
   * Over one pooled client, calling it at once: statements sent together (Promise.all) are pipelined.
   * (Kysely's connection runs one statement at a time.)
   */
  private static execOfClient(client: pg.PoolClient, commitNow: () => void): Exec {
    // The query is queued on the client when `all` is called (before any await): calls go out in call order.
    const ex = execOf(async <T>(sql: string, params: unknown[] = []) => {
      coalesceWrites(client);
      if (!statementStats) return (await client.query(toPg(sql), pgParams(params))).rows as T[];
      const t0 = performance.now();
      const rows = (await client.query(toPg(sql), pgParams(params))).rows as T[];
      countStatement(sql, performance.now() - t0);
      return rows;
    });
    return {
      ...ex,
      final: <T>(sql: string, params?: unknown[]) => {
        const rows = ex.all<T>(sql, params);
        commitNow();
        return rows;
      },
    };
  }

  /** Group commit (pg-group-commit.ts), unless `alone`. */
  tx<T>(fn: (ex: Exec) => Promise<T>, opts?: TxOptions): Promise<T> {
    return opts?.alone ? this.txAlone(fn) : this.group.run(fn, opts?.early);
  }

  private async txAlone<T>(fn: (ex: Exec) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.onClient(fn);
      } catch (e) {
        // Lock-order cycles between replicas are rare but possible; the whole transaction is safe to rerun.
        const code = (e as { code?: string }).code;
        if (attempt < 5 && code && RETRYABLE_PG.has(code)) continue;
        throw e;
      }
    }
  }

  /**
   * One transaction on a pooled client of its own, its statements pipelined (a group-commit batch, or one
   * transaction of txAlone's). A failed ROLLBACK (the connection lost) is thrown instead of fn's error.
   */
  private async onClient<T>(fn: (ex: Exec) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken = false;
    // COMMIT sent behind a final statement (Exec.final), before fn has its answer.
    let early: Promise<pg.QueryResult> | null = null;
    const commitNow = () => {
      if (early) return;
      PgGroupCommit.stats.early++;
      early = client.query('COMMIT');
      early.catch(() => {});
    };
    try {
      coalesceWrites(client);
      // BEGIN goes out with fn's first statement: should it fail, the connection is lost, and so is all after it.
      const begin = client.query('BEGIN');
      begin.catch(() => {});
      let out: T;
      try {
        out = await fn(PostgresBackend.execOfClient(client, commitNow));
        await begin;
      } catch (e) {
        await begin.catch(() => {});
        const sent = early as Promise<pg.QueryResult> | null;
        if (sent) {
          // fn failed after its COMMIT went out. If a statement failed, PostgreSQL answered it with a rollback
          // and nothing is left to undo; if it committed, fn broke its promise (Exec.final), and the caller must
          // know that its writes are durable all the same.
          const r = await sent.catch((err: unknown) => err);
          if ((r as pg.QueryResult)?.command === 'COMMIT') throw new CommittedThenFailed(e);
          if (!(r as pg.QueryResult)?.command) {
            broken = true; // the connection failed while committing: what became of the transaction is unknown
            throw r;
          }
          throw e;
        }
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = true;
          throw rollbackError;
        }
        throw e;
      }
      const done = await ((early as Promise<pg.QueryResult> | null) ?? client.query('COMMIT'));
      // A statement whose failure was not seen by fn leaves the transaction aborted, and COMMIT then rolls back.
      if (done.command !== 'COMMIT') throw new RolledBackAtCommit();
      return out;
    } finally {
      // A client whose ROLLBACK failed is discarded; one whose connection broke the pool discards itself.
      client.release(broken);
    }
  }

  read<T>(fn: (ex: Exec) => Promise<T>): Promise<T> {
    return fn(this.exec);
  }

  // The database's clock is the reference every replica judges leases and due times by. Asking it on every
  // request costs a round trip, so the offset from the local clock is measured (half the round trip
  // corrected) and refreshed every few seconds; between refreshes the local clock runs it forward.
  private clockOffset = 0;
  private clockCheckedAt = 0;
  private clockRefresh: Promise<void> | null = null;

  async now(): Promise<number> {
    const local = Date.now();
    if (local - this.clockCheckedAt > CLOCK_REFRESH_MS || this.clockCheckedAt === 0) {
      this.clockRefresh ??= this.measureClock().finally(() => {
        this.clockRefresh = null;
      });
      // The first reading must come from the database; later ones use the previous offset meanwhile (and a
      // failed refresh — the database away — is retried on a later call, never left unhandled).
      if (this.clockCheckedAt === 0) await this.clockRefresh;
      else this.clockRefresh.catch(() => {});
    }
    return Date.now() + this.clockOffset;
  }

  private async measureClock(): Promise<void> {
    const t0 = Date.now();
    const [r] = await this.exec.all<{ now: number }>('SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS now');
    const t1 = Date.now();
    this.clockOffset = Number(r!.now) - Math.round((t0 + t1) / 2);
    this.clockCheckedAt = t1;
  }

  async migrationPrelude(ex: Exec): Promise<void> {
    // Building an index on a big table may take longer than the pool's statement_timeout.
    await ex.all('SET LOCAL statement_timeout = 0');
    // Replicas starting together queue here; the loser then finds every migration applied.
    await ex.all('SELECT pg_advisory_xact_lock(hashtext(?))', [`tsched.migrate.${this.schema}`]);
    await ex.all(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
    await ex.all(`SET LOCAL search_path TO "${this.schema}"`);
  }

  async close(): Promise<void> {
    // Kysely ends the pool only if it ever used it; transactions take their clients from the pool directly.
    await this.kysely.destroy();
    if (!this.pool.ending) await this.pool.end();
  }
}

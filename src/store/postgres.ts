// PostgreSQL adapter: a pg Pool under Kysely. Every table lives in one schema (default "public"), chosen with
// search_path on each connection, so tests and tenants can each use their own.

import pg from 'pg';
import { validationError } from '../domain/errors.js';
import { PostgresBackend } from './backend.js';
import { KyselyStore, type StoreOptions } from './kysely-store.js';

export interface PostgresStoreOptions extends StoreOptions {
  /** postgres://user@host:port/database */
  url: string;
  /** Schema holding the tables; created by migrate() when absent. */
  schema?: string;
  /** Pool size; default 10. */
  maxConnections?: number;
  /** Server-side limit on one statement, ms; default 30000 (0: none). Migrations lift it for themselves. */
  statementTimeoutMs?: number;
  /** How long to wait for a new connection before failing (the API then answers 503), ms; default 5000. */
  connectTimeoutMs?: number;
  /**
   * Named prepared statements for the store's own statements (default true): each is parsed once per
   * connection instead of on every call, and planned once where PostgreSQL finds a generic plan as good.
   * Turn off behind a pooler that cannot keep them (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const INT8 = 20;
const NUMERIC = 1700;

// int8 (ids, epoch ms, sums) as JS numbers on this pool only; every value we store is below 2^53.
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8 || oid === NUMERIC) return (v: string) => (v === null ? null : Number(v));
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

export function createPostgresStore(opts: PostgresStoreOptions): KyselyStore {
  const schema = opts.schema ?? 'public';
  if (!SCHEMA_NAME.test(schema))
    throw validationError([{ path: 'schema', message: 'expected a PostgreSQL identifier: letters, digits and _' }]);
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.maxConnections ?? 10,
    types: types as unknown as pg.CustomTypesConfig,
    // A hung statement or a transaction left open must not hold row locks (and the leader row) forever.
    options: `-c search_path=${schema} -c statement_timeout=${Math.max(0, Math.floor(opts.statementTimeoutMs ?? 30_000))} -c idle_in_transaction_session_timeout=60000`,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    // Notice a dead peer (a cut network, a crashed host) on idle connections.
    keepAlive: true,
    // Statements issued together on one connection (a batch's independent reads, BEGIN before the first)
    // go out at once instead of one round trip each. Code that awaits each statement is unaffected.
    pipeline: true,
  });
  // An idle client that loses its server must not crash the process; the next query reports the error.
  pool.on('error', () => {});
  // Nor a checked-out one between two statements of a transaction (pg-pool listens only while idle): its
  // pending and next queries fail, and the pool discards it on release.
  pool.on('connect', (client) => {
    client.on('error', () => {});
    if (opts.preparedStatements !== false) prepareOnThis(client);
  });
  return new KyselyStore(new PostgresBackend(pool, schema), opts);
}

/** Text → statement name, shared by every connection (a name always means the same text). */
const statementNames = new Map<string, string>();
/** Beyond this many distinct texts, new ones run unnamed (bounds the server-side memory per connection). */
const MAX_NAMED = 1000;
/** Only data statements: DDL, session commands and transaction control run as they are. */
const DATA_STATEMENT = /^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b/i;
/**
 * `*` in a select or RETURNING list: such a statement's row shape follows the table's columns, and a
 * prepared one fails with "cached plan must not change result type" (SQLSTATE 0A000) once another replica's
 * migration adds a column, while rolling upgrades promise that old replicas ignore new columns. So after
 * the first such failure this process runs them unnamed (parsed afresh, in the new shape): a statement of
 * its own is rerun at once, one inside a transaction fails it with a code the store retries.
 */
const STAR_LIST = /(?:^|[\s,])(?:\w+\.)?\*(?=[\s,)]|$)/;
/** `SELECT * FROM unnest(…)` (the batched writes): its shape is the parameters', not a table's. */
const STAR_OF_UNNEST = /SELECT \* FROM unnest\(/g;
const tableShaped = (sql: string) => STAR_LIST.test(sql.replace(STAR_OF_UNNEST, 'SELECT v FROM unnest('));
const SHAPE_CHANGED = '0A000';
let reshaped = false;

/**
 * Runs the store's statements as named prepared statements on this connection. The store sends each
 * statement's text with `$n` placeholders and never splices values into it (lists are array parameters;
 * the candidate walk's window class is one of a few constants), so a text recurs exactly: parsing it once
 * per connection removes a fixed cost from every round trip (the placement and report statements are long
 * CTE chains over unnest()). PostgreSQL then plans each statement
 * for its first five calls' values and keeps a generic plan only where it costs no more than those did: the
 * writes go generic (no planning per call). The candidate walk would keep a plan per call (its custom plans
 * look cheaper), so a scheduling pass forces its generic plan (see KyselyStore.candidates; seen in
 * pg_stat_statements: as many plans as calls). The store's ANALYZE after a burst invalidates cached plans.
 * Kysely calls query(text, values); pg prepares a named query on first use per connection.
 */
function prepareOnThis(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: unknown }).query = (config: unknown, values?: unknown, cb?: unknown) => {
    if (typeof config === 'string' && Array.isArray(values) && cb === undefined && DATA_STATEMENT.test(config)) {
      let name = statementNames.get(config);
      if (name === undefined && statementNames.size < MAX_NAMED) {
        name = `tsched_${statementNames.size}`;
        statementNames.set(config, name);
      }
      // (tableShaped is asked only off the hot path: once reshaped, or on the error.)
      if (name !== undefined && !(reshaped && tableShaped(config))) {
        return (query({ name, text: config, values }) as Promise<unknown>).catch((e: { code?: string }) => {
          if (e?.code !== SHAPE_CHANGED || !tableShaped(config)) throw e;
          reshaped = true;
          if (client.getTransactionStatus() === 'I') return query(config, values);
          throw e;
        });
      }
    }
    return query(config, values, cb);
  };
}

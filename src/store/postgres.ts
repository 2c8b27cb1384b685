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
    options: `-c search_path=${schema}`,
  });
  // An idle client that loses its server must not crash the process; the next query reports the error.
  pool.on('error', () => {});
  return new KyselyStore(new PostgresBackend(pool, schema), opts);
}

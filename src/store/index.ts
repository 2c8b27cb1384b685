// Opens a store from a database URL:
//   sqlite:/path/to/file.db | sqlite:relative.db | /path/to/file.db | ./file.db | :memory:  → SQLite
//   postgres://… | postgresql://…  (optional ?schema=name)                                 → PostgreSQL

import { validationError } from '../domain/errors.js';
import type { StoreOptions } from './kysely-store.js';
import type { Store } from './port.js';
import { createPostgresStore } from './postgres.js';
import { createSqliteStore } from './sqlite.js';

export { KyselyStore, type StoreOptions } from './kysely-store.js';
export { MIGRATIONS } from './migrations/index.js';
export type { Store } from './port.js';
export { createPostgresStore, type PostgresStoreOptions } from './postgres.js';
export { createSqliteStore, type SqliteStoreOptions } from './sqlite.js';

export interface OpenStoreOptions extends StoreOptions {
  url: string;
  /** PostgreSQL schema; overrides ?schema= in the URL. */
  schema?: string;
  maxConnections?: number;
  /** PostgreSQL only: per-statement timeout, ms (default 30000). */
  statementTimeoutMs?: number;
}

export function openStore(opts: OpenStoreOptions): Store {
  const url = opts.url.trim();
  if (url === '')
    throw validationError([{ path: 'db', message: 'expected a database URL: sqlite:<file>, a file path, :memory: or postgres://…' }]);
  if (/^postgres(ql)?:\/\//i.test(url)) {
    const u = new URL(url);
    const schema = opts.schema ?? u.searchParams.get('schema') ?? undefined;
    u.searchParams.delete('schema');
    return createPostgresStore({ ...opts, url: u.toString(), schema });
  }
  if (/^sqlite:/i.test(url)) {
    let path = url.slice('sqlite:'.length);
    if (path.startsWith('//')) path = path.slice(2); // sqlite:///abs/path → /abs/path
    if (path === '') throw validationError([{ path: 'db', message: 'expected a file after sqlite:, e.g. sqlite:./.tsched/tsched.db' }]);
    return createSqliteStore({ ...opts, path });
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw validationError([
      { path: 'db', message: `unsupported database URL scheme in "${url.split(':')[0]}:"; expected sqlite: or postgres://` },
    ]);
  }
  return createSqliteStore({ ...opts, path: url });
}

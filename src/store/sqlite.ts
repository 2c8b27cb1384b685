// SQLite adapter: better-sqlite3 12 under Kysely. One connection per process; writes are serialised.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteBackend } from './backend.js';
import { KyselyStore, type StoreOptions } from './kysely-store.js';

export interface SqliteStoreOptions extends StoreOptions {
  /** A file path, or ":memory:". */
  path: string;
  /** How long a writer waits for another process's lock before SQLITE_BUSY, ms. */
  busyTimeoutMs?: number;
}

export function createSqliteStore(opts: SqliteStoreOptions): KyselyStore {
  if (opts.path !== ':memory:' && opts.path !== '') mkdirSync(dirname(opts.path), { recursive: true });
  const db = new Database(opts.path);
  // WAL lets readers run beside the writer. synchronous=FULL fsyncs the WAL at every commit: with NORMAL
  // a power loss can drop the last commits, and "accepted means durable" (201 only after commit) forbids that.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
  db.pragma('foreign_keys = OFF');
  return new KyselyStore(new SqliteBackend(db), opts);
}

// SQLite adapter: better-sqlite3 12 under Kysely. One connection per database file per process, shared by
// every store opened on it: writes are serialised by that connection's mutex (two connections in one
// thread would deadlock, one waiting on a lock the other can only release after an await).

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteBackend } from './backend.js';
import { KyselyStore, type StoreOptions } from './kysely-store.js';

export interface SqliteStoreOptions extends StoreOptions {
  /** A file path, or ":memory:". */
  path: string;
  /** How long a writer waits for another process's write lock before failing with SQLITE_BUSY, ms. */
  busyTimeoutMs?: number;
}

const open = new Map<string, SqliteBackend>();

export function createSqliteStore(opts: SqliteStoreOptions): KyselyStore {
  const memory = opts.path === ':memory:' || opts.path === '';
  const key = memory ? null : resolve(opts.path);
  const shared = key ? open.get(key) : undefined;
  if (shared) {
    shared.refs++;
    return new KyselyStore(shared, opts);
  }
  if (key) mkdirSync(dirname(key), { recursive: true });
  const db = new Database(key ?? ':memory:');
  // WAL lets readers run beside the writer. synchronous=FULL fsyncs the WAL at every commit: with NORMAL
  // a power loss can drop the last commits, and "accepted means durable" (201 only after commit) forbids that.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  // Lock waits are retried asynchronously in SqliteBackend.begin(), never by blocking the event loop.
  db.pragma('busy_timeout = 0');
  db.pragma('foreign_keys = OFF');
  // A page cache for the hot pages (better-sqlite3 builds SQLite with 16 MB), and memory-mapped reads for
  // the rest: both cut the per-operation cost of a busy control plane without touching durability. 8 MiB,
  // not more: a b-tree split that puts two new pages in order swaps their numbers through page 262,145
  // (past the pending byte), and the commit after it then sweeps the cache's whole hash table
  // (pcache1TruncateUnsafe), which is as large as the most pages the cache ever held: 4 % of the server's CPU
  // draining 100,000 tasks with 64 MiB, 0.4 % with 8 MiB.
  db.pragma('cache_size = -8192');
  db.pragma('mmap_size = 268435456');
  db.pragma('temp_store = MEMORY');
  const backend = new SqliteBackend(db, opts.busyTimeoutMs ?? 5000);
  if (key) {
    open.set(key, backend);
    backend.onClose = () => open.delete(key);
  }
  return new KyselyStore(backend, opts);
}

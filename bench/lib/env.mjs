// Where the benchmark finds its services, and how it resets their state between runs. Every run starts
// from nothing: the Redis db is flushed, the PostgreSQL schema is dropped and created again, and SQLite
// gets a fresh directory.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const REDIS = {
  host: process.env.BENCH_REDIS_HOST ?? '127.0.0.1',
  port: Number(process.env.BENCH_REDIS_PORT ?? 6379),
  // A db of its own so that flushing it cannot touch anyone else's keys.
  db: Number(process.env.BENCH_REDIS_DB ?? 13),
};

export const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** The PostgreSQL schema each system gets, distinct so that no run can see another's state. */
export const SCHEMAS = { pgboss: 'bench_pgboss', graphile: 'bench_graphile', tsched: 'bench_tsched' };

export async function withPg(fn) {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Drop and create a schema: the PostgreSQL reset between runs. */
export async function resetSchema(schema) {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`schema: expected a plain lower-case identifier, got ${JSON.stringify(schema)}`);
  await withPg(async (c) => {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.query(`CREATE SCHEMA ${schema}`);
  });
}

export async function dropSchema(schema) {
  await withPg((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
}

/** Flush the bench's Redis db. */
export async function flushRedis() {
  const { Redis } = await import('ioredis');
  const r = new Redis({ ...REDIS, lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  try {
    await r.flushdb();
  } finally {
    r.disconnect();
  }
}

/** A fresh directory for a SQLite data dir; remove it with the returned function. */
export async function freshDir(prefix = 'tsched-bench-') {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

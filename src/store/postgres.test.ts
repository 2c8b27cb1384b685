// The PostgreSQL store's sessions: its statements are named prepared statements (parsed once per
// connection) unless turned off, and every session plans each call for its own values.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PG_URL, postgresAvailable, requireService } from '../../test/helpers/services.js';
import { normalizeTask } from '../domain/task-spec.js';
import { createPostgresStore } from './postgres.js';

const pgUp = requireService('PostgreSQL (prepared statements)', await postgresAvailable());

describe.runIf(pgUp)('PostgreSQL sessions', () => {
  const schemas: string[] = [];
  afterAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
    await client.end();
  });

  /** Submits and lists through a one-connection store, then reads that session's prepared statements. */
  const sessionAfterWork = async (preparedStatements: boolean | undefined) => {
    const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    const store = createPostgresStore({
      url: PG_URL,
      schema,
      maxConnections: 1,
      ...(preparedStatements === undefined ? {} : { preparedStatements }),
    });
    try {
      await store.migrate();
      const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
      for (let i = 0; i < 3; i++) await store.submitTasks('u', [spec, spec], { now: Date.now(), actor: 'u' });
      const listed = await store.listTasks({ owner: 'u', limit: 10 });
      const [mode] = await store.backend.read((ex) => ex.all<{ plan_cache_mode: string }>('SHOW plan_cache_mode'));
      const named = await store.backend.read((ex) =>
        ex.all<{ name: string; statement: string }>('SELECT name, statement FROM pg_prepared_statements ORDER BY name'),
      );
      return { listed: listed.tasks.length, mode: mode?.plan_cache_mode, named };
    } finally {
      await store.close();
    }
  };

  it('runs its statements as named prepared statements, each parsed once per connection', async () => {
    const s = await sessionAfterWork(undefined);
    expect(s.listed).toBe(6);
    expect(s.mode).toBe('force_custom_plan');
    const submits = s.named.filter((r) => r.name.startsWith('tsched_') && r.statement.startsWith('INSERT INTO tasks'));
    // Three submits of the same shape: one prepared statement, not three.
    expect(submits).toHaveLength(1);
  });

  it('runs them unnamed when preparedStatements is false', async () => {
    const s = await sessionAfterWork(false);
    expect(s.listed).toBe(6);
    expect(s.named.filter((r) => r.name.startsWith('tsched_'))).toEqual([]);
  });
});

// PostgreSQL keeps planning the scheduler's candidate query as an index walk through a burst of submits,
// because the store refreshes the statistics itself (autovacuum would take up to a minute), sampling only
// the columns its statements' plans read.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { submitBurst } from '../../test/helpers/burst.js';
import { PG_URL, postgresAvailable, requireService } from '../../test/helpers/services.js';
import { createPostgresStore } from './postgres.js';

const pgUp = requireService('PostgreSQL (statistics refresh after a burst)', await postgresAvailable());

describe.runIf(pgUp)('PostgreSQL statistics after a burst of submits', () => {
  const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: PG_URL });
  afterAll(async () => {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await client.end().catch(() => {});
  });

  const planOfCandidates = async (now: number) => {
    const r = await client.query(
      `EXPLAIN SELECT * FROM "${schema}".tasks WHERE status = 'waiting' AND +due_at <= ${now} AND paused = 0 AND is_definition = 0 ORDER BY priority DESC, start_deadline, id LIMIT 64`,
    );
    return r.rows.map((x) => x['QUERY PLAN'] as string).join('\n');
  };

  it('walks the ready index for the candidate window once 5,000 tasks arrived in a few seconds', async () => {
    await client.connect();
    const store = createPostgresStore({ url: PG_URL, schema, maxConnections: 4 });
    await store.migrate();
    // Only the store's own ANALYZE may sample this table here: an autovacuum one (at the server's default
    // target) landing in the few seconds below would rewrite the statistics checked at the end.
    await client.query(`ALTER TABLE "${schema}".tasks SET (autovacuum_enabled = false)`);
    const now = Date.now();
    await submitBurst(store, now);
    // The refresh runs off the request path: give it a moment, far below autovacuum's one-minute naptime.
    const deadline = Date.now() + 10_000;
    let plan = await planOfCandidates(now);
    while (!/Index Scan using tasks_ready/.test(plan) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      plan = await planOfCandidates(now);
    }
    expect(plan).toMatch(/Index Scan using tasks_ready/);
    expect(plan).not.toMatch(/Sort/);
    const stats = await client.query(`SELECT last_analyze FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'tasks'`, [schema]);
    expect(stats.rows[0]?.last_analyze).not.toBeNull();
    // Only the columns plans read are sampled: the wide text and JSON ones cost most of an ANALYZE.
    const columns = await client.query(`SELECT attname FROM pg_stats WHERE schemaname = $1 AND tablename = 'tasks'`, [schema]);
    const analyzed = columns.rows.map((r) => r.attname as string);
    expect(analyzed).toEqual(expect.arrayContaining(['status', 'priority', 'start_deadline', 'due_at', 'paused']));
    expect(analyzed).not.toContain('command');
    expect(analyzed).not.toContain('env');
    // Sampled at a statistics target of 10 (3,000 rows): a histogram of at most 11 bounds over the 5,000
    // distinct ids, not the 101 of the default target.
    const hist = await client.query(
      `SELECT array_length(histogram_bounds::text::bigint[], 1) AS n FROM pg_stats WHERE schemaname = $1 AND tablename = 'tasks' AND attname = 'id'`,
      [schema],
    );
    expect(Number(hist.rows[0]?.n)).toBeGreaterThan(1);
    expect(Number(hist.rows[0]?.n)).toBeLessThanOrEqual(11);
    await store.close();
  });
});

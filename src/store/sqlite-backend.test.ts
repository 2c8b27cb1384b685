// The SQLite backend's statement cache: statements in use stay prepared.

import { describe, expect, it } from 'vitest';
import { SqliteBackend } from './backend.js';
import { createSqliteStore } from './sqlite.js';

describe('SQLite statement cache', () => {
  it('keeps a statement in use prepared however many others pass through (least recently used go first)', async () => {
    const store = createSqliteStore({ path: ':memory:' });
    try {
      const run = (sql: string) => store.backend.read((ex) => ex.all<{ n: number }>(sql));
      const hot = 'SELECT 1 AS n';
      await run(hot);
      const before = SqliteBackend.stats.prepares;
      // Batched statements bring a text per list length: thousands of others, the hot one between them.
      for (let i = 0; i < 3000; i++) {
        expect(await run(`SELECT ${i + 2} AS n`)).toEqual([{ n: i + 2 }]);
        if (i % 100 === 0) expect(await run(hot)).toEqual([{ n: 1 }]);
      }
      expect(SqliteBackend.stats.prepares - before).toBe(3000);
      // A text dropped long ago is prepared again, and still answers.
      expect(await run('SELECT 2 AS n')).toEqual([{ n: 2 }]);
      expect(SqliteBackend.stats.prepares - before).toBe(3001);
    } finally {
      await store.close();
    }
  });
});

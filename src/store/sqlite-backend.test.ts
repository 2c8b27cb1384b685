// The SQLite backend's statement cache: statements in use stay prepared; a bound LIMIT still limits.

import { describe, expect, it } from 'vitest';
import { SqliteBackend, sqliteText } from './backend.js';
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

  it('a cached statement with a bound LIMIT (prepared as LIMIT +?) returns as many rows as each call asks', async () => {
    const store = createSqliteStore({ path: ':memory:' });
    try {
      await store.backend.tx(async (ex) => {
        await ex.all('CREATE TABLE lim (k INTEGER PRIMARY KEY)');
        await ex.all('INSERT INTO lim (k) VALUES (1), (2), (3), (4), (5), (6)');
      });
      const sql = 'SELECT k FROM lim WHERE k > ? ORDER BY k LIMIT ?';
      const take = (after: number, n: number) =>
        store.backend.read((ex) => ex.all<{ k: number }>(sql, [after, n])).then((rows) => rows.map((r) => r.k));
      const before = SqliteBackend.stats.prepares;
      expect(await take(0, 2)).toEqual([1, 2]);
      expect(await take(1, 4)).toEqual([2, 3, 4, 5]);
      expect(await take(0, 0)).toEqual([]);
      expect(await take(3, 10)).toEqual([4, 5, 6]);
      // One statement, prepared once, for every limit.
      expect(SqliteBackend.stats.prepares - before).toBe(1);
      // Not an integer: refused, as a LIMIT is.
      await expect(take(0, 1.5)).rejects.toThrow(/datatype mismatch/);
      // What SQLite prepares: every bound LIMIT behind a unary plus, nothing else touched.
      expect(sqliteText(sql)).toBe('SELECT k FROM lim WHERE k > ? ORDER BY k LIMIT +?');
      expect(
        sqliteText('SELECT 1 AS walk, id FROM (SELECT id FROM t LIMIT ?) UNION ALL SELECT 2, id FROM (SELECT id FROM t LIMIT ?)'),
      ).toBe('SELECT 1 AS walk, id FROM (SELECT id FROM t LIMIT +?) UNION ALL SELECT 2, id FROM (SELECT id FROM t LIMIT +?)');
      expect(sqliteText('SELECT id FROM t WHERE a = ? AND b IN (?, ?)')).toBe('SELECT id FROM t WHERE a = ? AND b IN (?, ?)');
    } finally {
      await store.close();
    }
  });
});

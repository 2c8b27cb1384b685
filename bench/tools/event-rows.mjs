// What a drain cycle's events cost to write: T tasks claimed (two events each) and ended (three each), as
// one row per event against the rows the store writes (rows.ts eventRowsOf: a task's events of one write
// share a row). Tables come from the store's own migrations, on SQLite (a temp file, WAL) and on PostgreSQL
// (a scratch schema); each cycle is two transactions, timed with their COMMIT, the two forms alternating.
//   node bench/tools/event-rows.mjs [--cycles N] [--tasks T]

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { createPostgresStore, createSqliteStore } from '../../dist/store/index.js';
import { EVENT_COLUMNS, eventRowsOf } from '../../dist/store/rows.js';
import { PG_URL, resetSchema, withPg } from '../lib/env.mjs';
import { percentile } from '../lib/stats.mjs';
import { toolArgs } from '../lib/tool-args.mjs';

const USAGE = 'usage: node bench/tools/event-rows.mjs [--cycles N] [--tasks T]\n';
const { cycles, tasks } = toolArgs(USAGE, { cycles: { type: 'string', default: '400' }, tasks: { type: 'string', default: '50' } }, [
  'cycles',
  'tasks',
]);

const SCHEMA = 'bench_event_rows';
let nextTask = 0;
/** One cycle's two writes: the claims' events and the ends' events, as the store makes them. */
function cycle() {
  const claims = [];
  const ends = [];
  const at = Date.now();
  for (let i = 0; i < tasks; i++) {
    const taskId = ++nextTask;
    const ev = (actor, type, from, to, reason = null) => ({ taskId, runId: taskId, at, actor, type, from, to, reason });
    claims.push(
      ev('scheduler', 'task.claimed', 'waiting', 'in_progress', 'attempt 1 on sim-0'),
      ev('scheduler', 'run.assigned', null, 'assigned'),
    );
    ends.push(
      ev('worker:sim-0', 'run.started', 'assigned', 'running'),
      ev('worker:sim-0', 'run.succeeded', 'running', 'succeeded'),
      ev('worker:sim-0', 'task.done', 'in_progress', 'done'),
    );
  }
  return [claims, ends];
}
const eachRow = (events) => events.map((e) => [e.taskId, e.runId, e.at, e.actor, e.type, e.from, e.to, e.reason, null]);
const FORMS = { 'one row per event': eachRow, 'rows shared per task': eventRowsOf };

/** Median ms per cycle of each form, alternating which goes first; the first tenth is warm-up. */
async function measure(write) {
  const times = Object.fromEntries(Object.keys(FORMS).map((f) => [f, []]));
  for (let i = 0; i < cycles; i++) {
    const order = i % 2 ? Object.keys(FORMS) : Object.keys(FORMS).reverse();
    for (const form of order) {
      const writes = cycle().map(FORMS[form]);
      const t0 = performance.now();
      for (const rows of writes) await write(rows);
      if (i >= cycles / 10) times[form].push(performance.now() - t0);
    }
  }
  return Object.entries(times)
    .map(([form, xs]) => `${form} ${percentile(xs, 50).toFixed(3)} ms`)
    .join(', ');
}

const cols = EVENT_COLUMNS.join(', ');
const dir = await mkdtemp(join(tmpdir(), 'tsched-event-rows-'));
try {
  const path = join(dir, 'events.db');
  const store = createSqliteStore({ path });
  await store.migrate();
  await store.close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  const inserts = new Map();
  const sqliteLine = await measure(async (rows) => {
    let st = inserts.get(rows.length);
    if (!st) {
      const one = `(${EVENT_COLUMNS.map(() => '?').join(',')})`;
      st = db.prepare(`INSERT INTO events (${cols}) VALUES ${rows.map(() => one).join(',')}`);
      inserts.set(rows.length, st);
    }
    db.exec('BEGIN IMMEDIATE');
    st.run(rows.flat());
    db.exec('COMMIT');
  });
  db.close();
  console.log(`SQLite, ${tasks} tasks a cycle: ${sqliteLine}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}

let pgUp = true;
try {
  await withPg((c) => c.query('SELECT 1'));
} catch (e) {
  pgUp = false;
  console.log(`PostgreSQL: not measured, ${PG_URL} did not answer (${e.message})`);
}
if (pgUp) {
  await resetSchema(SCHEMA);
  const store = createPostgresStore({ url: PG_URL, schema: SCHEMA });
  await store.migrate();
  await store.close();
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`SET search_path TO ${SCHEMA}`);
    const types = ['int8', 'int8', 'int8', 'text', 'text', 'text', 'text', 'text', 'text'];
    const text = `INSERT INTO events (${cols}) SELECT * FROM unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`;
    const pgLine = await measure(async (rows) => {
      await c.query('BEGIN');
      await c.query({ name: 'events', text, values: EVENT_COLUMNS.map((_, i) => rows.map((r) => r[i])) });
      await c.query('COMMIT');
    });
    console.log(`PostgreSQL, ${tasks} tasks a cycle: ${pgLine}`);
  } finally {
    await c.query(`DROP SCHEMA ${SCHEMA} CASCADE`);
    await c.end();
  }
}

// End-to-end test of bench/run.mjs at toy sizes: every suite against every system, through the same
// trial processes as a real run, and the Markdown report it writes. Needs Redis and PostgreSQL; without
// them it skips LOUDLY, and fails under CI. tsched joins when it is built (npm run build).
// Run: node --test bench/test/

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function reachable(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

test('run.mjs measures every suite and system and writes the report', { timeout: 600_000 }, async (t) => {
  const services = (await reachable(6379)) && (await reachable(5432));
  if (!services) {
    const msg =
      '!!! bench/test/run.test.mjs: Redis (6379) or PostgreSQL (5432) is not reachable: SKIPPING the benchmark end-to-end test !!!';
    if (process.env.CI === 'true') assert.fail(msg);
    console.warn(msg);
    t.skip(msg);
    return;
  }
  const built = existsSync(join(ROOT, 'dist/server/embedded.js')) && existsSync(join(ROOT, 'dist/worker/agent.js'));
  if (!built) console.warn('!!! bench/test/run.test.mjs: tsched is not built (npm run build): testing the peers only !!!');
  const systems = built ? 'tsched-sqlite,tsched-pg,bullmq,pgboss,graphile' : 'bullmq,pgboss,graphile';
  const dir = await mkdtemp(join(tmpdir(), 'tsched-bench-test-'));
  try {
    const out = join(dir, 'BENCH.md');
    const json = join(dir, 'results.json');
    const res = spawnSync(
      process.execPath,
      [
        'bench/run.mjs',
        '--systems',
        systems,
        '--runs',
        '1',
        '--n',
        '200',
        '--exec-n',
        '40',
        '--rates',
        '50',
        '--duration',
        '1',
        '--out',
        out,
        '--json',
        json,
      ],
      { cwd: ROOT, encoding: 'utf8', timeout: 580_000 },
    );
    assert.equal(res.status, 0, `run.mjs failed:\n${res.stdout}\n${res.stderr}`);
    const md = await readFile(out, 'utf8');
    for (const heading of [
      '## Machine',
      '## 1. Control-plane throughput',
      '## 2. Real execution',
      '## 3. Submit-to-start latency at 50/s',
    ]) {
      assert.ok(md.includes(heading), `report lacks "${heading}"`);
    }
    const { results } = JSON.parse(await readFile(json, 'utf8'));
    const expected = systems.split(',').length * 3 + 1; // three suites each, plus the raw spawn rate
    assert.equal(results.length, expected);
    for (const r of results) {
      assert.ok(r.result.ok, `${r.suite} ${r.system}: ${r.result.error}`);
      if (r.suite === 'throughput') assert.ok(r.result.completionsPerSec > 0 && r.result.submitsPerSec > 0);
      if (r.suite === 'exec') assert.ok(r.result.perSec > 0 && r.result.n === 40);
      if (r.suite === 'latency') assert.ok(r.result.sent === 50 && r.result.p50 <= r.result.p99 && r.result.p99 <= r.result.max);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// Reads the traces pg-trace.mjs wrote (/tmp/pg-trace-*.json, or the files named) and prints, for the
// process with the most statements: its transactions' median length, round trips and the time between
// them, and a few transactions from the middle of the run, statement by statement (ms from BEGIN).
//   node bench/tools/pg-trace-report.mjs [FILE…] [--show N]

import { readdirSync, readFileSync } from 'node:fs';
import { percentile } from '../lib/stats.mjs';

/** BEGIN…COMMIT/ROLLBACK groups per backend connection, in the order they began. */
export function transactions(log) {
  const byBackend = new Map();
  for (const e of [...log].sort((a, b) => a[0] - b[0])) {
    if (!byBackend.has(e[2])) byBackend.set(e[2], []);
    byBackend.get(e[2]).push(e);
  }
  const out = [];
  for (const entries of byBackend.values()) {
    let open = null;
    for (const e of entries) {
      if (/^BEGIN\b/.test(e[3])) open = [e];
      else if (open) {
        open.push(e);
        if (/^(COMMIT|ROLLBACK)\b/.test(e[3])) {
          out.push(open);
          open = null;
        }
      }
    }
  }
  return out.sort((a, b) => a[0][0] - b[0][0]);
}

/**
 * Round trips of one transaction: a statement sent while the one before it is still unanswered rides the
 * same trip (pipelined); one sent after that answer waited for it, and starts a new trip.
 */
export function roundTrips(tx) {
  const bySend = [...tx].sort((a, b) => a[0] - b[0]);
  let n = 0;
  for (let i = 0; i < bySend.length; i++) if (i === 0 || bySend[i][0] >= bySend[i - 1][1]) n++;
  return n;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const showAt = args.indexOf('--show');
  const show = showAt >= 0 ? Number(args.splice(showAt, 2)[1]) : 2;
  const files =
    args.length > 0
      ? args
      : readdirSync('/tmp')
          .filter((f) => /^pg-trace-\d+\.json$/.test(f))
          .map((f) => `/tmp/${f}`);
  if (files.length === 0) {
    process.stderr.write('no trace: run with NODE_OPTIONS="--import ./bench/tools/pg-trace.mjs" first\n');
    process.exit(2);
  }
  const traces = [];
  for (const f of files) {
    try {
      const t = JSON.parse(readFileSync(f, 'utf8'));
      if (!Array.isArray(t)) throw new Error('not a list of statements');
      traces.push(t);
    } catch (e) {
      process.stderr.write(`${f}: expected a trace written by bench/tools/pg-trace.mjs: ${e.message}\n`);
      process.exit(2);
    }
  }
  const log = traces.sort((a, b) => b.length - a.length)[0];
  const txs = transactions(log);
  if (txs.length === 0) {
    process.stderr.write(`${log.length} statements, no transaction among them\n`);
    process.exit(1);
  }
  const ms = (xs) => `${percentile(xs, 50).toFixed(2)} ms`;
  const gaps = txs.slice(1).map((t, i) => t[0][0] - txs[i].at(-1)[1]);
  console.log(
    `${txs.length} transactions: length p50 ${ms(txs.map((t) => t.at(-1)[1] - t[0][0]))}, ` +
      `round trips p50 ${percentile(txs.map(roundTrips), 50)}, between one's answer and the next BEGIN p50 ${ms(gaps)}`,
  );
  const mid = Math.floor(txs.length / 2);
  for (const tx of txs.slice(mid, mid + show)) {
    console.log('---');
    for (const [sent, answered, , text] of tx)
      console.log(`${(sent - tx[0][0]).toFixed(2).padStart(7)} → ${(answered - tx[0][0]).toFixed(2).padStart(7)}  ${text.slice(0, 90)}`);
  }
}

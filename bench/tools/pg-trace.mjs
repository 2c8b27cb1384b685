// Preload that records when every pg statement of a process was sent and answered (performance.now, ms),
// for taking a PostgreSQL cycle apart round trip by round trip. With the benchmark:
//   NODE_OPTIONS="--import ./bench/tools/pg-trace.mjs" node bench/run.mjs --suites throughput \
//     --systems tsched-pg --runs 1 --no-write
//   node bench/tools/pg-trace-report.mjs
// Each process writes /tmp/pg-trace-<pid>.json (every 3 s and at exit): [sent, answered, backend pid, text].

import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const pg = createRequire(import.meta.url)('pg');
const log = [];
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (config, values, callback) {
  const text = typeof config === 'string' ? config : config?.text;
  const sent = performance.now();
  const result = query.call(this, config, values, callback);
  const backend = this.processID;
  if (text && typeof result?.then === 'function') {
    const done = (prefix) => () => log.push([sent, performance.now(), backend, prefix + text.replace(/\s+/g, ' ').slice(0, 100)]);
    result.then(done(''), done('ERROR '));
  }
  return result;
};
const file = `/tmp/pg-trace-${process.pid}.json`;
const save = () => log.length > 0 && writeFileSync(file, JSON.stringify(log));
setInterval(save, 3000).unref();
process.on('exit', save);

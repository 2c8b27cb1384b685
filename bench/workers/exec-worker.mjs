// A peer's worker process for the real-execution suite, forked by suites/exec.mjs. It connects, says
// `ready`, starts on `go`, reports the ids it completed in batches, and closes on `stop`.

const [system, inflightArg] = process.argv.slice(2);
const inflight = Number(inflightArg);
const mod = await import(`../systems/${system}.mjs`);

let buffer = [];
const flush = () => {
  if (buffer.length) {
    process.send({ type: 'done', ids: buffer });
    buffer = [];
  }
};
const timer = setInterval(flush, 20);
const worker = await mod.execWorker({ inflight, onDone: (i) => buffer.push(i) });

process.on('message', async (msg) => {
  if (msg.type === 'go') await worker.go();
  else if (msg.type === 'stop') {
    await worker.close();
    flush();
    clearInterval(timer);
    process.send({ type: 'stopped' }, () => process.exit(0));
  }
});
process.send({ type: 'ready' });

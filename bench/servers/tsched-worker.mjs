// A real tsched worker agent in its own process, for the real-execution suite. Loads the agent first,
// says `ready`, and starts only on `go`, so that the clock does not count Node's start-up.

import pino from 'pino';

const { startWorker } = await import('../../dist/worker/agent.js');
let worker = null;
process.on('message', async (msg) => {
  if (msg?.type === 'go') {
    const logger = pino({ level: process.env.TSCHED_LOG_LEVEL ?? 'warn' }, pino.destination({ dest: 2, sync: false }));
    worker = await startWorker({ ...msg.options, logger });
    process.send({ type: 'started', id: worker.id });
  } else if (msg?.type === 'stop') {
    await worker?.stop({ drainTimeoutMs: 5_000 });
    process.send({ type: 'stopped' }, () => process.exit(0));
  }
});
process.send({ type: 'ready' });

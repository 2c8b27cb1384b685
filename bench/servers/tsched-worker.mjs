// A real tsched worker agent in its own process, for the real-execution suite. Loads the agent first,
// says `ready`, and starts only on `go`, so that the clock does not count Node's start-up.
// TSCHED_BENCH_AGENT_PROFILE=/tmp/agent: profile each agent while it runs (/tmp/agent-<pid>.cpuprofile).

import pino from 'pino';

const { startWorker } = await import('../../dist/worker/agent.js');
let profiler;
if (process.env.TSCHED_BENCH_AGENT_PROFILE) {
  const { Session } = await import('node:inspector/promises');
  profiler = new Session();
  profiler.connect();
  await profiler.post('Profiler.enable');
}
let worker = null;
process.on('message', async (msg) => {
  if (msg?.type === 'go') {
    const logger = pino({ level: process.env.TSCHED_LOG_LEVEL ?? 'warn' }, pino.destination({ dest: 2, sync: false }));
    await profiler?.post('Profiler.start');
    worker = await startWorker({ ...msg.options, logger });
    process.send({ type: 'started', id: worker.id });
  } else if (msg?.type === 'stop') {
    await worker?.stop({ drainTimeoutMs: 5_000 });
    if (profiler) {
      const { profile } = await profiler.post('Profiler.stop');
      const out = `${process.env.TSCHED_BENCH_AGENT_PROFILE}-${process.pid}.cpuprofile`;
      (await import('node:fs')).writeFileSync(out, JSON.stringify(profile));
    }
    process.send({ type: 'stopped' }, () => process.exit(0));
  }
});
process.send({ type: 'ready' });

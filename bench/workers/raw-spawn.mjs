// One of the two processes of the raw spawn-rate measure: spawn /bin/true n times, `inflight` at once.

import { spawnMany } from '../lib/spawnpool.mjs';

process.on('message', async (msg) => {
  if (msg.type !== 'go') return;
  const count = await spawnMany(msg.n, msg.inflight, '/bin/true');
  process.send({ type: 'finished', count }, () => process.exit(0));
});
process.send({ type: 'ready' });

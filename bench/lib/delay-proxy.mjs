#!/usr/bin/env node
// A TCP forwarder that holds every chunk for a delay in each direction, to see what round trips cost when a
// service is across a network rather than on loopback (timers fire in whole milliseconds: 1 ms each way is
// about 2–4 ms per round trip). Not part of the benchmark's tables. Example:
//   node bench/lib/delay-proxy.mjs 15432 5432 1 &
//   BENCH_PG_URL=postgres://postgres@127.0.0.1:15432/test node bench/run.mjs --suites latency --rates 100 --systems tsched-pg --runs 1 --no-write
import net from 'node:net';

const [listenPort, targetPort, delayMs] = process.argv.slice(2).map(Number);
if (!listenPort || !targetPort || !(delayMs >= 0)) {
  console.error('usage: node bench/lib/delay-proxy.mjs LISTEN_PORT TARGET_PORT DELAY_MS');
  process.exit(2);
}
const forward = (from, to) => from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMs));
net
  .createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  })
  .listen(listenPort, '127.0.0.1', () => console.error(`delay-proxy: 127.0.0.1:${listenPort} -> ${targetPort}, ${delayMs} ms each way`));

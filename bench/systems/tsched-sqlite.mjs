// tsched embedded on SQLite (durable commits), its own process; see lib/tsched-system.mjs.
import { makeTsched } from '../lib/tsched-system.mjs';

const sys = makeTsched('sqlite');
export const { name, label, backend, throughput, latencyHarness, exec, cleanup } = sys;

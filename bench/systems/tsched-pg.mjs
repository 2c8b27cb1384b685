// tsched cluster replica on PostgreSQL (durable commits), its own process; see lib/tsched-system.mjs.
import { makeTsched } from '../lib/tsched-system.mjs';

const sys = makeTsched('pg');
export const { name, label, backend, throughput, latencyHarness, exec, cleanup } = sys;

// Forked helper processes that talk over IPC: wait for a message of a type, stop them cleanly.

import { fork } from 'node:child_process';

export function forkChild(path, args = [], opts = {}) {
  // TSCHED_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the tsched server and agents.
  const extra =
    process.env.TSCHED_BENCH_NODE_ARGS && /tsched-(server|worker)/.test(path) ? process.env.TSCHED_BENCH_NODE_ARGS.split(' ') : [];
  const child = fork(path, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, ...extra], ...opts });
  child.exitPromise = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

/** Resolve with the first message of `type`; reject if the child exits first or timeoutMs passes. */
export function waitFor(child, type, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`child ${child.pid}: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
    const onMsg = (msg) => {
      if (msg?.type === type) done(null, msg);
    };
    const onExit = (code, signal) => done(new Error(`child ${child.pid} exited (${code ?? signal}) before '${type}'`));
    function done(err, msg) {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(msg);
    }
    child.on('message', onMsg);
    child.once('exit', onExit);
  });
}

/** Kill a child we started (by its pid) if it is still alive, and wait for it. */
export async function killChild(child, signal = 'SIGTERM', graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await child.exitPromise;
  clearTimeout(t);
}

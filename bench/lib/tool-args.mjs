// Command-line flags of a diagnostics tool (bench/tools): parsed with node:util's parseArgs; a bad flag, or
// a value of `positive` that is not a positive integer, prints what is wrong and the usage and exits 2.

import { parseArgs } from 'node:util';

/** The tool's flags, those named in `positive` as numbers. */
export function toolArgs(usage, options, positive = []) {
  const fail = (message) => {
    process.stderr.write(`${message}\n${usage}`);
    process.exit(2);
  };
  let values;
  try {
    ({ values } = parseArgs({ options }));
  } catch (e) {
    fail(e.message);
  }
  const out = { ...values };
  for (const k of positive) out[k] = Number(values[k]);
  if (positive.some((k) => !Number.isInteger(out[k]) || out[k] < 1))
    fail(`${positive.map((k) => `--${k}`).join(' and ')}: expected positive integers`);
  return out;
}

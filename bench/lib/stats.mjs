// Small, pure statistics helpers used by every suite and by the report.

/** Percentile by nearest rank on a sorted copy (p in 0..100). Returns NaN for an empty list. */
export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** p50/p90/p99/max of a list of latencies (ms). One sort for all of them. */
export function latencySummary(values) {
  if (values.length === 0) return { count: 0, p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, max: Number.NaN };
  const sorted = Float64Array.from(values).sort();
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  return { count: sorted.length, p50: at(50), p90: at(90), p99: at(99), max: sorted[sorted.length - 1] };
}

/** Median with min and max, over the runs of one measure. NaN entries (failed runs) are ignored. */
export function spread(values) {
  const ok = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (ok.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, runs: 0 };
  const mid = ok.length >> 1;
  const median = ok.length % 2 ? ok[mid] : (ok[mid - 1] + ok[mid]) / 2;
  return { median, min: ok[0], max: ok[ok.length - 1], runs: ok.length };
}

/** Format a number for a table: rates as integers with thousands separators, small values with precision. */
export function fmt(v, digits) {
  if (!Number.isFinite(v)) return '—';
  if (digits !== undefined) return v.toFixed(digits);
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/**
 * Exactly-once check over a map id → number of completions. Throws, naming the first few offenders,
 * when an expected id completed zero or several times, or an unexpected id completed at all.
 */
export function checkExactlyOnce(counts, expectedIds, label) {
  const missing = [];
  const dup = [];
  for (const id of expectedIds) {
    const c = counts.get(id) ?? 0;
    if (c === 0) missing.push(id);
    else if (c > 1) dup.push(`${id}×${c}`);
  }
  const expected = new Set(expectedIds);
  const unexpected = [...counts.keys()].filter((id) => !expected.has(id));
  if (missing.length || dup.length || unexpected.length) {
    throw new Error(
      `${label}: exactly-once check failed: ${missing.length} missing (${missing.slice(0, 5).join(',')}), ` +
        `${dup.length} duplicated (${dup.slice(0, 5).join(',')}), ${unexpected.length} unexpected (${unexpected.slice(0, 5).join(',')})`,
    );
  }
  return { checked: expectedIds.length };
}

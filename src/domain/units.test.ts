import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, formatSize, parseDuration, parseSize } from './units.js';

describe('parseDuration', () => {
  it.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
    ['PT15M', 900_000],
    ['P1DT2H', 93_600_000],
    ['PT0.5S', 500],
    ['1500', 1500],
    [2000, 2000],
  ])('%s → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });
  it.each(['-5m', 'soon', '', '5 parsecs', 'P', 'PT', '10x', '5m-', -1, Number.NaN])('refuses %s', (input) => {
    expect(parseDuration(input as string | number)).toBeNull();
  });
  it('round-trips through formatDuration', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000 }), (secs) => {
        expect(parseDuration(formatDuration(secs * 1000))).toBe(secs * 1000);
      }),
    );
  });
});

describe('parseSize', () => {
  it.each([
    ['512Mi', 512 * 1024 ** 2],
    ['2GiB', 2 * 1024 ** 3],
    ['1.5G', 1.5e9],
    ['100MB', 100e6],
    ['64k', 64_000],
    ['1024', 1024],
    [4096, 4096],
  ])('%s → %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });
  it.each(['lots', '-1G', '1.5 parsecs', '', 'G', -5])('refuses %s', (input) => {
    expect(parseSize(input as string | number)).toBeNull();
  });
  it('formats binary units', () => {
    expect(formatSize(512 * 1024 ** 2)).toBe('512MiB');
    expect(formatSize(1.5 * 1024 ** 3)).toBe('1.5GiB');
    expect(formatSize(100)).toBe('100B');
  });
});

// The results spool on a real directory: batches share one segment, which is emptied in place once all of
// it is acked; what is not acked survives a restart; a segment grown past its size is set aside and deleted
// when its last result is acked.

import { promises as fsp, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ResultItem, ResultSpool } from './spool.js';

let workDir: string;
beforeEach(async () => {
  workDir = await fsp.mkdtemp(join(tmpdir(), 'tsched-spool-'));
});
afterEach(async () => {
  await fsp.rm(workDir, { recursive: true, force: true });
});

const result = (runId: number, pad = 0): ResultItem =>
  ({ runId, token: `tok-${runId}${'x'.repeat(pad)}`, outcome: 'succeeded', exitCode: 0 }) as ResultItem;

const files = () => readdirSync(join(workDir, 'spool')).map((f) => ({ f, size: statSync(join(workDir, 'spool', f)).size }));

describe('results spool', () => {
  it('appends batches to one segment, empties it in place when all is acked, and removes it at close', async () => {
    const sp = new ResultSpool(workDir);
    await sp.init();
    await sp.append([result(1), result(2)]);
    await sp.append([result(3)]);
    expect(files()).toHaveLength(1);
    expect(sp.size).toBe(3);
    sp.ack([1, 2]);
    await sp.append([result(4)]);
    expect(files()[0]?.size).toBeGreaterThan(0);
    sp.ack([3, 4]);
    await sp.append([]); // nothing to write; the truncation is queued behind earlier work
    await sp.close();
    expect(files()).toEqual([]);
    expect(sp.size).toBe(0);
  });

  it('writes after an emptying at the start of the file, and a restart finds only what was not acked', async () => {
    const sp = new ResultSpool(workDir);
    await sp.init();
    await sp.append([result(1), result(2)]);
    sp.ack([1, 2]);
    await sp.append([result(3)]);
    const [seg] = files();
    const text = await fsp.readFile(join(workDir, 'spool', seg?.f as string), 'utf8');
    expect(text).toBe(`${JSON.stringify(result(3))}\n`); // no hole, no acked line before it
    // A crash now: a new life reads the spool back.
    const again = new ResultSpool(workDir);
    expect((await again.init()).map((r) => r.runId)).toEqual([3]);
    again.ack([3]);
    await again.close();
    await sp.close();
  });

  it('sets a full segment aside for a new one and deletes it when its last result is acked', async () => {
    const sp = new ResultSpool(workDir);
    await sp.init();
    // ~1.1 MiB of unacked results in 1 KiB lines: past the segment size, so the next batch starts another.
    for (let b = 0; b < 11; b++) await sp.append(Array.from({ length: 100 }, (_, i) => result(b * 100 + i + 1, 1000)));
    await sp.append([result(5000)]);
    expect(files()).toHaveLength(2);
    sp.ack(Array.from({ length: 1100 }, (_, i) => i + 1));
    await new Promise((r) => setTimeout(r, 50)); // the unlink is not awaited by ack
    expect(files()).toHaveLength(1);
    // The first segment (batches 1-10) is gone; the active one still holds the acked batch 11 beside 5000
    // (resent after a crash: the server dedupes), since it is emptied only when nothing in it is unacked.
    const back = (await new ResultSpool(workDir).init()).map((r) => r.runId);
    expect(back).toContain(5000);
    expect(back.filter((id) => id <= 1000)).toEqual([]);
    await sp.close();
  });
});

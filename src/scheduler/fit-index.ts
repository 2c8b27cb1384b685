// A segment tree over a fixed list of workers that finds the best-scoring worker with room for a shape
// without scoring every worker for every task. Each node keeps:
// - the max free cpu, memory and ports below it (exact per-resource pruning);
// - a 16×16 grid of (cpu level, memory level) occupancy, so that a subtree where cpu-rich workers are
//   memory-poor and vice versa is pruned as a whole, and so that best fit gets a tight lower bound. It is kept
//   as suffix masks (per memory level, the cpu levels with a worker at that memory level or above; and the
//   converse), so a search step reads two masks instead of scanning the grid's rows;
// - the max free shares, for spread.
// Search is branch and bound: the most promising child first, and subtrees that cannot beat the best
// worker found so far are skipped. Once a fitting worker is found, only a bounded number more are scored
// (Nomad's "limit" iterator), which keeps a search near O(log n) on big, busy clusters.

export type Mode = 'binpack' | 'spread';
/** 0: cpu is the task's dominant resource, 1: memory. */
export type Dominant = 0 | 1;

// A tie between workers on the dominant resource is broken by the other resource, weighted this little.
const SECONDARY = 1e-6;
/** Levels per resource in the occupancy grid. */
const LEVELS = 16;
/** Per node: 16 row masks then 16 column masks of 16 bits, i.e. 32 halfwords = 16 words. */
const WORDS = 16;
const HALVES = 2 * WORDS;

interface Buffers {
  f: Float64Array;
  g: Uint32Array;
}
/** Free buffers by tree length. Contents are reset on reuse, so results never depend on it. */
const POOL = new Map<number, Buffers[]>();

export class FitIndex {
  readonly n: number;
  private readonly size: number;
  private readonly maxC: Float64Array;
  private readonly maxM: Float64Array;
  private readonly maxP: Float64Array;
  private readonly maxFC: Float64Array;
  private readonly maxFM: Float64Array;
  /**
   * The grid's suffix masks, as halfwords at node·32: [j] (j < 16) has bit i set when some worker below the
   * node is at cpu level i and memory level ≥ j; [16 + i] has bit j set when one is at memory level j and
   * cpu level ≥ i. grid is the same memory as words, to merge children 32 bits at a time.
   */
  private readonly grid: Uint16Array;
  private readonly words: Uint32Array;
  /** The least free cpu (memory) a worker in each level can have. */
  private readonly edgeC: Float64Array;
  private readonly edgeM: Float64Array;
  private readonly stack = new Int32Array(128);
  /** How many fitting workers one search scores at most once it has found one (stop early). */
  scoreLimit = 8;

  /**
   * unitC/unitM scale free cpu and memory to comparable numbers (e.g. the mean worker capacity);
   * topC/topM are the largest capacities, the range the grid levels cover.
   */
  constructor(
    n: number,
    private readonly unitC: number,
    private readonly unitM: number,
    private readonly topC: number,
    private readonly topM: number,
  ) {
    this.n = n;
    let size = 1;
    while (size < n) size <<= 1;
    this.size = size;
    const len = 2 * size;
    // Passes on big clusters build several indexes each; reusing their buffers spares the garbage collector.
    const b = POOL.get(len)?.pop() ?? { f: new Float64Array(5 * len), g: new Uint32Array(len * WORDS) };
    this.buffers = b;
    this.maxC = b.f.subarray(0, len).fill(-1);
    this.maxM = b.f.subarray(len, 2 * len).fill(-1);
    this.maxP = b.f.subarray(2 * len, 3 * len).fill(-1);
    this.maxFC = b.f.subarray(3 * len, 4 * len).fill(Number.NEGATIVE_INFINITY);
    this.maxFM = b.f.subarray(4 * len, 5 * len).fill(Number.NEGATIVE_INFINITY);
    this.words = b.g.fill(0);
    this.grid = new Uint16Array(b.g.buffer, b.g.byteOffset, b.g.length * 2);
    this.edgeC = FitIndex.EDGE.map((e) => e * topC);
    this.edgeM = FitIndex.EDGE.map((e) => e * topM);
  }

  private buffers: Buffers | null;

  /** Gives the buffers back for reuse; the index must not be used afterwards. */
  release(): void {
    const b = this.buffers;
    if (!b) return;
    this.buffers = null;
    const len = 2 * this.size;
    const list = POOL.get(len) ?? [];
    if (list.length < 16) list.push(b);
    POOL.set(len, list);
  }

  // Levels are powers of two below the largest capacity: row i ≥ 1 holds [top·2^(i−16), top·2^(i−15)), row 0
  // everything smaller. Relative precision matters: on a busy cluster small requests meet small free amounts.
  private static level(x: number, top: number): number {
    if (x <= 0 || top <= 0) return 0;
    const l = Math.floor(Math.log2(x / top)) + LEVELS;
    return l < 0 ? 0 : Math.min(l, LEVELS - 1);
  }

  /** The least free amount a worker in level i can have, as a fraction of top. */
  private static readonly EDGE = Float64Array.from({ length: LEVELS }, (_, i) => (i === 0 ? 0 : 2 ** (i - LEVELS)));

  /** Sets a leaf without fixing its ancestors; call rebuild() after a batch of these. */
  setLeaf(pos: number, freeC: number, freeM: number, freeP: number, capC: number, capM: number): void {
    const i = this.size + pos;
    this.maxC[i] = freeC;
    this.maxM[i] = freeM;
    this.maxP[i] = freeP;
    this.maxFC[i] = capC > 0 ? freeC / capC : 0;
    this.maxFM[i] = capM > 0 ? freeM / capM : 0;
    const g = i * WORDS;
    for (let w = 0; w < WORDS; w++) this.words[g + w] = 0;
    if (freeC < 0 || freeM < 0) return; // overcommitted: fits nothing, occupies no level
    const lc = FitIndex.level(freeC, this.topC);
    const lm = FitIndex.level(freeM, this.topM);
    const h = i * HALVES;
    for (let j = 0; j <= lm; j++) this.grid[h + j] = 1 << lc;
    for (let k = 0; k <= lc; k++) this.grid[h + LEVELS + k] = 1 << lm;
  }

  rebuild(): void {
    const g = this.words;
    for (let i = this.size - 1; i >= 1; i--) {
      const l = 2 * i;
      const r = l + 1;
      this.maxC[i] = Math.max(this.maxC[l], this.maxC[r]);
      this.maxM[i] = Math.max(this.maxM[l], this.maxM[r]);
      this.maxP[i] = Math.max(this.maxP[l], this.maxP[r]);
      this.maxFC[i] = Math.max(this.maxFC[l], this.maxFC[r]);
      this.maxFM[i] = Math.max(this.maxFM[l], this.maxFM[r]);
      const gi = i * WORDS;
      const gl = l * WORDS;
      const gr = r * WORDS;
      for (let w = 0; w < WORDS; w++) g[gi + w] = g[gl + w] | g[gr + w];
    }
  }

  /**
   * Sets a leaf and fixes its ancestors, stopping at the first one that does not change: its own ancestors
   * are then unchanged too. On a big cluster a placement usually changes only the lowest few levels.
   */
  update(pos: number, freeC: number, freeM: number, freeP: number, capC: number, capM: number): void {
    this.setLeaf(pos, freeC, freeM, freeP, capC, capM);
    for (let i = (this.size + pos) >> 1; i >= 1; i >>= 1) if (!this.pull(i)) break;
  }

  /** Recomputes node i from its children; whether anything in it changed. */
  private pull(i: number): boolean {
    const l = 2 * i;
    const r = l + 1;
    const c = Math.max(this.maxC[l], this.maxC[r]);
    const m = Math.max(this.maxM[l], this.maxM[r]);
    const p = Math.max(this.maxP[l], this.maxP[r]);
    const fc = Math.max(this.maxFC[l], this.maxFC[r]);
    const fm = Math.max(this.maxFM[l], this.maxFM[r]);
    let changed = c !== this.maxC[i] || m !== this.maxM[i] || p !== this.maxP[i] || fc !== this.maxFC[i] || fm !== this.maxFM[i];
    this.maxC[i] = c;
    this.maxM[i] = m;
    this.maxP[i] = p;
    this.maxFC[i] = fc;
    this.maxFM[i] = fm;
    const g = this.words;
    const gi = i * WORDS;
    const gl = l * WORDS;
    const gr = r * WORDS;
    for (let w = 0; w < WORDS; w++) {
      const v = (g[gl + w] | g[gr + w]) >>> 0; // as stored: `|` yields a signed int
      if (v !== g[gi + w]) {
        g[gi + w] = v;
        changed = true;
      }
    }
    return changed;
  }

  /** Whether some single worker might have room (exact for one dimension, optimistic across them). */
  mayFit(c: number, m: number, p: number): boolean {
    return this.maxC[1] >= c && this.maxM[1] >= m && this.maxP[1] >= p;
  }

  // Scratch results of probe(): the lowest cpu level and the lowest memory level, among grid cells at or
  // above the request's levels, that hold a worker below the node. -1 when no cell does.
  private rowHit = -1;
  private colHit = -1;

  private probe(node: number, lc: number, lm: number): void {
    const h = node * HALVES;
    // cpu levels ≥ lc holding a worker at memory level ≥ lm, and the converse.
    const rows = this.grid[h + lm] & (0xffff << lc);
    if (rows === 0) {
      this.rowHit = -1;
      this.colHit = -1;
      return;
    }
    const cols = this.grid[h + LEVELS + lc] & (0xffff << lm);
    this.rowHit = 31 - Math.clz32(rows & -rows);
    this.colHit = 31 - Math.clz32(cols & -cols);
  }

  /**
   * The position of the best worker with room for (c, m, p) that `accept` allows, or -1.
   * binpack: least leftover of the dominant resource (best fit, leaving big holes for big tasks);
   * spread: largest free share of the dominant resource (least loaded).
   */
  findBest(c: number, m: number, p: number, mode: Mode, dom: Dominant, accept: ((pos: number) => boolean) | null): number {
    if (!this.mayFit(c, m, p)) return -1;
    const { maxC, maxM, maxP, stack } = this;
    const lc = FitIndex.level(c, this.topC);
    const lm = FitIndex.level(m, this.topM);
    let best = -1;
    let bestScore = Number.POSITIVE_INFINITY;
    let budget = this.scoreLimit;
    let sp = 0;
    stack[sp++] = 1;
    while (sp > 0 && budget > 0) {
      const node = stack[--sp];
      if (maxC[node] < c || maxM[node] < m || maxP[node] < p) continue;
      if (node >= this.size) {
        const pos = node - this.size;
        if (pos >= this.n) continue;
        // The leaf's score, inline (a call returning a double boxes it when not inlined).
        let score: number;
        if (mode === 'binpack') {
          const lc = (maxC[node] - c) / this.unitC;
          const lm = (maxM[node] - m) / this.unitM;
          score = dom === 0 ? lc + SECONDARY * lm : lm + SECONDARY * lc;
        } else score = dom === 0 ? -this.maxFC[node] - SECONDARY * this.maxFM[node] : -this.maxFM[node] - SECONDARY * this.maxFC[node];
        if (score < bestScore && (accept === null || accept(pos))) {
          best = pos;
          bestScore = score;
        }
        if (best >= 0) budget--;
        continue;
      }
      const l = 2 * node;
      const r = l + 1;
      // A child without a worker that has enough of each resource on its own is not bounded at all.
      let bl = Number.POSITIVE_INFINITY;
      let br = Number.POSITIVE_INFINITY;
      if (!(maxC[l] < c || maxM[l] < m || maxP[l] < p)) {
        this.bound(l, c, m, lc, lm, mode, dom);
        bl = this.boundOut[0];
      }
      if (!(maxC[r] < c || maxM[r] < m || maxP[r] < p)) {
        this.bound(r, c, m, lc, lm, mode, dom);
        br = this.boundOut[0];
      }
      // Visit the more promising child first (pushed last); skip children that cannot beat the best so far.
      if (bl <= br) {
        if (br < bestScore) stack[sp++] = r;
        if (bl < bestScore) stack[sp++] = l;
      } else {
        if (bl < bestScore) stack[sp++] = l;
        if (br < bestScore) stack[sp++] = r;
      }
    }
    return best;
  }

  /**
   * A lower bound of the leaf scores below `node` among workers that fit (+Infinity when none can), into
   * boundOut[0]. Not returned: a double returned from a call that is not inlined is boxed,
   * and findBest asks for two per node visited (most of a pass's garbage).
   */
  private bound(node: number, c: number, m: number, lc: number, lm: number, mode: Mode, dom: Dominant): void {
    const out = this.boundOut;
    this.probe(node, lc, lm);
    if (this.rowHit < 0) out[0] = Number.POSITIVE_INFINITY;
    else if (mode === 'binpack') {
      // A worker in cpu level i has at least EDGE[i]·top free; same for memory.
      const fc = this.edgeC[this.rowHit];
      const fm = this.edgeM[this.colHit];
      const bc = Math.max(0, (fc - c) / this.unitC);
      const bm = Math.max(0, (fm - m) / this.unitM);
      out[0] = dom === 0 ? bc + SECONDARY * bm : bm + SECONDARY * bc;
    } else out[0] = dom === 0 ? -this.maxFC[node] - SECONDARY * this.maxFM[node] : -this.maxFM[node] - SECONDARY * this.maxFC[node];
  }
  private readonly boundOut = new Float64Array(1);
}

// A segment tree over a fixed list of workers that finds the best-scoring worker with room for a shape
// in about O(log n), instead of scoring every worker for every task. Each node keeps the max free cpu,
// memory and ports below it (to prune subtrees where nothing fits) and the bounds the two scoring modes
// need (to prune subtrees that cannot beat the best worker found so far: branch and bound).

export type Mode = 'binpack' | 'spread';
/** 0: cpu is the task's dominant resource, 1: memory. */
export type Dominant = 0 | 1;

// A tie between workers on the dominant resource is broken by the other resource, weighted this little.
const SECONDARY = 1e-6;

export class FitIndex {
  readonly n: number;
  private readonly size: number;
  private readonly maxC: Float64Array;
  private readonly maxM: Float64Array;
  private readonly maxP: Float64Array;
  private readonly minC: Float64Array;
  private readonly minM: Float64Array;
  private readonly maxFC: Float64Array;
  private readonly maxFM: Float64Array;
  private readonly stack = new Int32Array(128);

  /** unitC/unitM scale free cpu and memory to comparable numbers (e.g. the mean worker capacity). */
  constructor(
    n: number,
    private readonly unitC: number,
    private readonly unitM: number,
  ) {
    this.n = n;
    let size = 1;
    while (size < n) size <<= 1;
    this.size = size;
    const len = 2 * size;
    this.maxC = new Float64Array(len).fill(-1);
    this.maxM = new Float64Array(len).fill(-1);
    this.maxP = new Float64Array(len).fill(-1);
    this.minC = new Float64Array(len).fill(Number.POSITIVE_INFINITY);
    this.minM = new Float64Array(len).fill(Number.POSITIVE_INFINITY);
    this.maxFC = new Float64Array(len).fill(Number.NEGATIVE_INFINITY);
    this.maxFM = new Float64Array(len).fill(Number.NEGATIVE_INFINITY);
  }

  /** Sets a leaf without fixing its ancestors; call rebuild() after a batch of these. */
  setLeaf(pos: number, freeC: number, freeM: number, freeP: number, capC: number, capM: number): void {
    const i = this.size + pos;
    this.maxC[i] = freeC;
    this.minC[i] = freeC;
    this.maxM[i] = freeM;
    this.minM[i] = freeM;
    this.maxP[i] = freeP;
    this.maxFC[i] = capC > 0 ? freeC / capC : 0;
    this.maxFM[i] = capM > 0 ? freeM / capM : 0;
  }

  rebuild(): void {
    for (let i = this.size - 1; i >= 1; i--) this.pull(i);
  }

  /** Sets a leaf and fixes its ancestors. */
  update(pos: number, freeC: number, freeM: number, freeP: number, capC: number, capM: number): void {
    this.setLeaf(pos, freeC, freeM, freeP, capC, capM);
    for (let i = (this.size + pos) >> 1; i >= 1; i >>= 1) this.pull(i);
  }

  private pull(i: number): void {
    const l = 2 * i;
    const r = l + 1;
    this.maxC[i] = Math.max(this.maxC[l], this.maxC[r]);
    this.maxM[i] = Math.max(this.maxM[l], this.maxM[r]);
    this.maxP[i] = Math.max(this.maxP[l], this.maxP[r]);
    this.minC[i] = Math.min(this.minC[l], this.minC[r]);
    this.minM[i] = Math.min(this.minM[l], this.minM[r]);
    this.maxFC[i] = Math.max(this.maxFC[l], this.maxFC[r]);
    this.maxFM[i] = Math.max(this.maxFM[l], this.maxFM[r]);
  }

  /** Whether some single worker might have room (exact for one dimension, optimistic across them). */
  mayFit(c: number, m: number, p: number): boolean {
    return this.maxC[1] >= c && this.maxM[1] >= m && this.maxP[1] >= p;
  }

  /** Largest free amount over the workers, per dimension. */
  maxFree(): { cpus: number; memory: number; ports: number } {
    return { cpus: this.maxC[1], memory: this.maxM[1], ports: this.maxP[1] };
  }

  /**
   * The position of the best worker with room for (c, m, p) that `accept` allows, or -1.
   * binpack: least leftover of the dominant resource (best fit, leaving big holes for big tasks);
   * spread: largest free share of the dominant resource (least loaded).
   */
  findBest(c: number, m: number, p: number, mode: Mode, dom: Dominant, accept: ((pos: number) => boolean) | null): number {
    if (!this.mayFit(c, m, p)) return -1;
    const { maxC, maxM, maxP, stack } = this;
    let best = -1;
    let bestScore = Number.POSITIVE_INFINITY;
    let sp = 0;
    stack[sp++] = 1;
    while (sp > 0) {
      const node = stack[--sp];
      if (maxC[node] < c || maxM[node] < m || maxP[node] < p) continue;
      if (this.bound(node, c, m, mode, dom) >= bestScore) continue;
      if (node >= this.size) {
        const pos = node - this.size;
        const score = this.leafScore(node, c, m, mode, dom);
        if (score < bestScore && (accept === null || accept(pos))) {
          best = pos;
          bestScore = score;
        }
        continue;
      }
      const l = 2 * node;
      const r = l + 1;
      // Visit the more promising child first (pushed last), so good leaves are found early and prune the rest.
      if (this.bound(l, c, m, mode, dom) <= this.bound(r, c, m, mode, dom)) {
        stack[sp++] = r;
        stack[sp++] = l;
      } else {
        stack[sp++] = l;
        stack[sp++] = r;
      }
    }
    return best;
  }

  private bound(node: number, c: number, m: number, mode: Mode, dom: Dominant): number {
    if (mode === 'binpack') {
      const left = dom === 0 ? (this.minC[node] - c) / this.unitC : (this.minM[node] - m) / this.unitM;
      return left > 0 ? left : 0;
    }
    return dom === 0 ? -this.maxFC[node] - SECONDARY * this.maxFM[node] : -this.maxFM[node] - SECONDARY * this.maxFC[node];
  }

  private leafScore(node: number, c: number, m: number, mode: Mode, dom: Dominant): number {
    if (mode === 'binpack') {
      const lc = (this.maxC[node] - c) / this.unitC;
      const lm = (this.maxM[node] - m) / this.unitM;
      return dom === 0 ? lc + SECONDARY * lm : lm + SECONDARY * lc;
    }
    return dom === 0 ? -this.maxFC[node] - SECONDARY * this.maxFM[node] : -this.maxFM[node] - SECONDARY * this.maxFC[node];
  }
}

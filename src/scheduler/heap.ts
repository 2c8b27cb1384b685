// A binary min-heap ordered by a strict "less" comparison. Pure, no I/O.

export class MinHeap<T> {
  private readonly a: T[] = [];

  constructor(private readonly less: (x: T, y: T) => boolean) {}

  get size(): number {
    return this.a.length;
  }

  peek(): T | undefined {
    return this.a[0];
  }

  push(x: T): void {
    const a = this.a;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i] as T, a[p] as T)) break;
      [a[i], a[p]] = [a[p] as T, a[i] as T];
      i = p;
    }
  }

  /** The least element; the heap must not be empty. */
  pop(): T {
    const a = this.a;
    const top = a[0] as T;
    const last = a.pop() as T;
    if (a.length > 0) {
      a[0] = last;
      this.siftDown();
    }
    return top;
  }

  /** Restores the order after the least element's key changed in place: one sift instead of a pop and a push. */
  fixTop(): void {
    this.siftDown();
  }

  private siftDown(): void {
    const a = this.a;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.less(a[l] as T, a[m] as T)) m = l;
      if (r < a.length && this.less(a[r] as T, a[m] as T)) m = r;
      if (m === i) break;
      const x = a[i] as T;
      a[i] = a[m] as T;
      a[m] = x;
      i = m;
    }
  }
}

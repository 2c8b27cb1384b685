// The two seams that make one control plane into several replicas (cluster mode). Embedded mode uses the
// trivial implementations below: always the leader, and nobody else to tell.

/** Who schedules. Exactly one replica holds leadership at a time; its epoch fences its writes. */
export interface Leadership {
  isLeader(): boolean;
  /** The fencing epoch while leader (checked by the store on every plan), or null when unfenced. */
  epoch(): number | null;
  /** Called with true when this replica becomes leader and false when it loses leadership. */
  onChange(cb: (leader: boolean) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Cluster mode: this replica's name and the current leader's, for /healthz and `tsched workers`. */
  describe?(): { replica: string; leaderReplica: string | null; epoch: number | null };
}

/** Messages between replicas: wake-ups only, never state (the database is the only shared state). */
export type BusMessage =
  | { kind: 'kick' } // work may be placeable: the leader should run a pass
  | { kind: 'workers'; ids: string[] } // these workers have assignments or cancels: wake their polls
  | { kind: 'logs'; runIds: number[] }; // these runs have new log output: wake their followers

export interface Bus {
  publish(msg: BusMessage): void;
  subscribe(cb: (msg: BusMessage) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export class SoleLeader implements Leadership {
  isLeader(): boolean {
    return true;
  }
  epoch(): number | null {
    return null;
  }
  onChange(cb: (leader: boolean) => void): void {
    queueMicrotask(() => cb(true));
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

export class LocalBus implements Bus {
  publish(): void {}
  subscribe(): void {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

// Resources: what a task asks for and what a worker advertises. CPU is in millicores, memory in bytes,
// so that all arithmetic is integer and exact.

export type Category = 'basic' | 'regular' | 'premium';
export const CATEGORIES: readonly Category[] = ['basic', 'regular', 'premium'];

/** A concrete shape: what a category expands to. */
export interface Shape {
  cpus: number; // millicores
  memory: number; // bytes
}

/** Default category shapes; the server may override them in its configuration. */
export const DEFAULT_CATEGORY_SHAPES: Readonly<Record<Category, Shape>> = Object.freeze({
  basic: { cpus: 1000, memory: 512 * 1024 ** 2 },
  regular: { cpus: 2000, memory: 2 * 1024 ** 3 },
  premium: { cpus: 4000, memory: 8 * 1024 ** 3 },
});

/** What a task requests, after normalisation. */
export interface ResourceRequest {
  /** The category it was derived from, if the user named one. */
  category: Category | null;
  cpus: number; // millicores, > 0
  memory: number; // bytes, > 0
  /** Number of anonymous ports. */
  ports: number;
  /** Named ports (each one also counts as a port): exposed as PORT_<NAME>. */
  portNames: string[];
}

/** A port range a worker can hand out, inclusive. */
export interface PortRange {
  from: number;
  to: number;
}

/** What a worker advertises. */
export interface Capacity {
  cpus: number; // millicores
  memory: number; // bytes
  ports: PortRange | null;
}

/** What was allocated to one run. */
export interface Allocation {
  cpus: number;
  memory: number;
  ports: number[];
  /** name → port, for named ports. */
  namedPorts: Record<string, number>;
}

export function portCount(r: ResourceRequest): number {
  return r.ports + r.portNames.length;
}

export function fits(req: Pick<ResourceRequest, 'cpus' | 'memory'>, free: Pick<Capacity, 'cpus' | 'memory'>): boolean {
  return req.cpus <= free.cpus && req.memory <= free.memory;
}

// A burst of waiting tasks submitted straight to a store (5 × 1,000 by default), as a busy API would.

import { normalizeTask } from '../../src/domain/task-spec.js';
import type { Store } from '../../src/store/port.js';

export async function submitBurst(store: Store, now: number, batches = 5, size = 1000): Promise<void> {
  const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
  for (let i = 0; i < batches; i++)
    await store.submitTasks(
      'u',
      Array.from({ length: size }, () => spec),
      { now, actor: 'u' },
    );
}

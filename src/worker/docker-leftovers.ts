// What a worker leaves in Docker when it dies: containers of its runs. Every container the docker executor
// creates carries labels naming its run, task and worker, so a restarted worker can find its previous life's
// containers and remove them (their runs were already ended `lost` by the server and will be retried).

import Docker from 'dockerode';

export const LABEL_RUN = 'tsched.run';
export const LABEL_TASK = 'tsched.task';
export const LABEL_WORKER = 'tsched.worker';

export function dockerClient(socketPath?: string): Docker {
  return socketPath ? new Docker({ socketPath }) : new Docker();
}

/** True when a Docker Engine answers on the socket (within a few seconds). */
export async function dockerAvailable(socketPath?: string, timeoutMs = 3000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const ping = dockerClient(socketPath)
      .ping()
      .then(() => true)
      .catch(() => false);
    return await Promise.race([ping, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Kills and removes every container labelled `tsched.worker=<workerName>`, running or not, and returns the
 * run ids they belonged to. Call it when the worker starts, before it takes new runs: anything found is a
 * previous life's. Containers that vanish meanwhile are fine; other errors are thrown.
 */
export async function cleanupDockerLeftovers(workerName: string, docker: Docker = dockerClient()): Promise<string[]> {
  const found = await docker.listContainers({ all: true, filters: { label: [`${LABEL_WORKER}=${workerName}`] } });
  const runIds: string[] = [];
  await Promise.all(
    found.map(async (c) => {
      try {
        // force: SIGKILL if running, then remove; v: its anonymous volumes too.
        await docker.getContainer(c.Id).remove({ force: true, v: true });
      } catch (e) {
        const code = (e as { statusCode?: number }).statusCode;
        if (code !== 404 && code !== 409) throw e; // gone already, or already being removed
      }
      runIds.push(c.Labels?.[LABEL_RUN] ?? c.Id.slice(0, 12));
    }),
  );
  return runIds.sort();
}

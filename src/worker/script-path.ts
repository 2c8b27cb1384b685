// Resolving a task's scriptPath under the worker's --scripts-root. The path is untrusted input: it must stay
// inside the root after every symlink is followed. Refusals carry a reason the user can act on.

import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';

export class ScriptPathRefused extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ScriptPathRefused';
  }
}

/** Returns the real, absolute path of the script, or throws ScriptPathRefused. */
export async function resolveScriptPath(scriptsRoot: string | undefined, scriptPath: string): Promise<string> {
  if (!scriptsRoot) throw new ScriptPathRefused('this worker has no --scripts-root, so it cannot run a scriptPath');
  if (scriptPath === '') throw new ScriptPathRefused('scriptPath is empty');
  if (scriptPath.includes('\0')) throw new ScriptPathRefused('scriptPath contains a NUL byte');
  if (isAbsolute(scriptPath)) throw new ScriptPathRefused(`"${scriptPath}" is absolute; expected a path relative to the scripts root`);
  if (scriptPath.split(/[\\/]/).includes('..'))
    throw new ScriptPathRefused(`"${scriptPath}" contains ".."; expected a path inside the scripts root`);
  let root: string;
  try {
    root = await realpath(scriptsRoot);
  } catch {
    throw new ScriptPathRefused(`the scripts root ${scriptsRoot} does not exist on this worker`);
  }
  let real: string;
  try {
    real = await realpath(resolve(root, scriptPath));
  } catch {
    throw new ScriptPathRefused(`"${scriptPath}" does not exist under the scripts root`);
  }
  const rel = relative(root, real);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel))
    throw new ScriptPathRefused(`"${scriptPath}" resolves outside the scripts root (through a symlink)`);
  const st = await stat(real);
  if (!st.isFile()) throw new ScriptPathRefused(`"${scriptPath}" is not a regular file`);
  return real;
}

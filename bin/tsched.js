#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run build`.
import('../dist/cli/main.js')
  .then((m) => m.main(process.argv))
  .catch((err) => {
    // Only the CLI's own entry missing means "not built"; any other missing module is a real error.
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
      process.stderr.write('tsched is not built yet: run `npm run build` (or `npm start`) first.\n');
      process.exit(70);
    }
    throw err;
  });

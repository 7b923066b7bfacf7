#!/usr/bin/env node
// The rmesh command. The TypeScript sources are compiled to dist/ by `npm run build`
// (the set-up script runs it); this shim only loads the compiled entry point.
import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('rmesh is not built yet: run `npm run build` in the rmesh folder (or ./setup.sh).')
    process.exit(70)
  }
  throw err
})

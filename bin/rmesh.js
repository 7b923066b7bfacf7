#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=2
// The rmesh command. The TypeScript sources are compiled to dist/ by `npm run build`
// (the set-up script runs it); this shim only loads the compiled entry point. The V8 flag on
// the first line keeps the daemon's young generation small and MALLOC_ARENA_MAX its malloc
// arenas few (DAEMON_NODE_FLAGS and DAEMON_ENV in cli/local-mesh.ts say why; a test keeps
// the two the same).
import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('rmesh is not built yet: run `npm run build` in the rmesh folder (or ./setup.sh).')
    process.exit(70)
  }
  throw err
})

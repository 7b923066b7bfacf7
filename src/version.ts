/** rmesh's version, read once from the package.json above this file (source or dist). */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function findVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
      if (pkg.name === 'rmesh') return String(pkg.version)
    } catch {}
    dir = dirname(dir)
  }
  return '0.0.0'
}

export const RMESH_VERSION = findVersion()

/** The repository root (where package.json and examples/ live). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
      if (pkg.name === 'rmesh') return dir
    } catch {}
    dir = dirname(dir)
  }
  return process.cwd()
}

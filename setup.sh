#!/usr/bin/env bash
# rmesh set-up: idempotent, safe to re-run. On a fresh Debian machine it installs
# Node 24 (where the system Node is older than 22), Blender and ffmpeg (Debian's
# packages), the npm packages, builds rmesh and makes the `rmesh` command available.
# As root it installs; as another user it prints exactly what to run and stops.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# Node ≥ 22 first on PATH: the npm registry's `node` package carries the binary.
export PATH="/usr/local/bin:$PATH"
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 22 ]; then
  if ! command -v npm >/dev/null 2>&1; then
    if is_root; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
    else die "npm is missing: run 'sudo apt-get install nodejs npm' then re-run ./setup.sh"; fi
  fi
  if is_root; then
    say "Installing Node 24 from the npm registry into /usr/local (system Node is $(node --version 2>/dev/null || echo none))"
    npm install -g --prefix /usr/local --no-audit --no-fund node@24
    hash -r
  else
    die "Node $(node --version 2>/dev/null || echo none) is too old (rmesh needs ≥ 22). Run: sudo npm install -g --prefix /usr/local node@24   then re-run ./setup.sh"
  fi
fi
[ "$(node_major)" -ge 22 ] || die "Node ≥ 22 is still not first on PATH (found $(node --version)); put /usr/local/bin first on PATH"
say "Node $(node --version)"

# Blender and ffmpeg from Debian's packages.
missing=()
command -v blender >/dev/null 2>&1 || missing+=(blender)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
# For the tests only: a browser for the web UI tests (no browser download at install) and
# iptables for the NAT tests in network namespaces. Both are skipped with a reason if absent.
if [ "${RMESH_SETUP_TEST_TOOLS:-1}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if is_root; then
    say "Installing ${missing[*]} from Debian's packages"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    die "Missing: ${missing[*]}. Run: sudo apt-get update && sudo apt-get install ${missing[*]}   then re-run ./setup.sh"
  fi
fi
say "$(blender --version 2>/dev/null | head -n1), $(ffmpeg -version | head -n1 | cut -d' ' -f1-3)"

# npm packages, exactly as the lock file says. The lock is complete for every platform
# (package.json pins cbor-extract to the release whose prebuilt binaries the registry has),
# so `npm ci` needs no fallback; if it fails, the lock file is wrong and that is a bug.
say "Installing npm packages"
npm ci --no-audit --no-fund

say "Building"
npm run -s build

# `rmesh` on PATH: as root, a symlink in /usr/local/bin (npm's global prefix is not
# /usr/local when Node itself came from the npm registry); `npx rmesh` works here anyway.
if is_root; then
  ln -sf "$PWD/bin/rmesh.js" /usr/local/bin/rmesh
fi
if command -v rmesh >/dev/null 2>&1; then
  say "rmesh is ready: $(command -v rmesh)"
else
  say "rmesh is ready: run it as 'npx rmesh' in this folder (or 'sudo npm link' to put it on PATH)"
fi

#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need on a fresh machine: each file
# in scripts/deps/ names what one area's tests need (Debian packages, Python modules).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/deps.sh
for f in scripts/deps/*.sh; do
  # shellcheck source=/dev/null
  source "$f"
done
install_needed

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# The end-to-end tests run this binary; built here once, the tests' own build is a no-op (the
# same command as tests/harness.rs) instead of stalling the first tests to start.
cargo build --locked --quiet -p okey --bin okey
cargo nextest run --locked --workspace --no-fail-fast "$@"

# The staff portal in a real browser (tests/portal).
bash tests/portal/run.sh

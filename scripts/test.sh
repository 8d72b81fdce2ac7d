#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need on a fresh machine:
# oathtool, the independent OTP implementation the calculator is checked against.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v oathtool >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "installing oathtool (Debian package) for the conformance tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq oathtool >/dev/null
  else
    echo "oathtool is missing: run 'sudo apt-get install oathtool' first" >&2
    exit 1
  fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

cargo nextest run --locked --workspace --no-fail-fast "$@"

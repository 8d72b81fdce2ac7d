#!/usr/bin/env bash
# Time `okey directory import` of a synthetic academy (scripts/gen_directory.py) against a
# throwaway `okey serve`: first import (every entry new), then the same files again (every entry
# updated). Usage: scripts/directory_bench.sh [PEOPLE] [UNITS]   (default 300000 2000)
# OKEY_BIN selects the binary (default target/release/okey, else target/debug/okey).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
people="${1:-300000}"
units="${2:-2000}"
bin="${OKEY_BIN:-}"
if [ -z "$bin" ]; then
  if [ -x "$here/target/release/okey" ]; then bin="$here/target/release/okey"; else bin="$here/target/debug/okey"; fi
fi
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 "$here/scripts/gen_directory.py" "$work/data" --people "$people" --units "$units"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cd "$work"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/okey-data" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$work/okey-data/admin.key" ] && grep -q listening "$work/serve.log" && break; sleep 0.1; done
export OKEY_SERVER="http://127.0.0.1:$port" OKEY_API_KEY_FILE="$work/okey-data/admin.key"
for run in first again; do
  start=$(date +%s.%N)
  "$bin" directory import "$work/data/people.csv" "$work/data/units.csv" 2>/dev/null
  end=$(date +%s.%N)
  echo "$run import of $people people and $units units: $(echo "$end - $start" | bc) s ($bin)"
done

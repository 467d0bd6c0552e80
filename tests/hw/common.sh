# Shared by tests/hw/*.sh: find the binary, start a local cluster on free ports, stop it on exit,
# and report each check as "name: measured (expected …) PASS|FAIL|BELOW".
# Only the compiled binary and the drivers are needed: no source tree, no Bun, no compiler.

BIN=${MOONCAKE_BIN:-}
if [ -z "$BIN" ]; then
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [ -x "$here/dist/mooncake" ]; then BIN="$here/dist/mooncake"; else BIN=$(command -v mooncake || true); fi
fi
[ -x "$BIN" ] || { echo "no mooncake binary: build it (bun compile/build.ts) or set MOONCAKE_BIN"; exit 2; }

WORK=$(mktemp -d)
UP_PID=""
FAILED=0
cleanup() {
  [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free TCP port above 20000 (bash's /dev/tcp: a port nothing answers on).
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "no free port found" >&2; exit 2
}

# start_cluster NODES SEGMENT [up flags…]: `mooncake up` in the background; sets MASTER and METADATA.
start_cluster() {
  local nodes=$1 segment=$2; shift 2
  local rpc metrics meta
  rpc=$(free_port); metrics=$(free_port); meta=$(free_port)
  "$BIN" up --nodes "$nodes" --segment-size "$segment" --rpc-port "$rpc" --metrics-port "$metrics" --metadata-port "$meta" "$@" >"$WORK/up.log" 2>&1 &
  UP_PID=$!
  for _ in $(seq 1 120); do
    grep -q "cluster ready" "$WORK/up.log" && break
    kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log"; echo "mooncake up exited"; exit 1; }
    sleep 0.5
  done
  grep -q "cluster ready" "$WORK/up.log" || { cat "$WORK/up.log"; echo "mooncake up not ready in 60 s"; exit 1; }
  MASTER="127.0.0.1:$rpc"
  METADATA="http://127.0.0.1:$meta/metadata"
}

# report NAME OK(0|1) TEXT
report() {
  if [ "$2" -eq 0 ]; then echo "$1: $3 PASS"; else echo "$1: $3 FAIL"; FAILED=$((FAILED + 1)); fi
}

# gbps_check NAME MEASURED EXPECTED: a speed is reported, never failed on (shared machines are noisy).
gbps_check() {
  local verdict
  verdict=$(awk -v m="$2" -v e="$3" 'BEGIN { print (m + 0 >= e + 0) ? "ok" : "BELOW" }')
  echo "$1: $2 GB/s (expected >= $3 GB/s) $verdict"
}

# json_field JSON FIELD: the first numeric value of FIELD in a JSON text (no jq needed).
json_field() {
  printf '%s' "$1" | tr ',{}[]' '\n\n\n\n\n' | sed -n "s/^ *\"$2\": *\([0-9.eE+-]*\).*/\1/p" | head -1
}

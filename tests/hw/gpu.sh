#!/usr/bin/env bash
# GPU memory on a real GPU (one NVIDIA GPU and its driver; no RDMA NIC needed): put from device
# memory in one process, get into device memory in another, compare; then the staged path's speed.
# Usage: tests/hw/gpu.sh            (uses dist/mooncake, or MOONCAKE_BIN, or mooncake on PATH)
# Prints each check beside what it expected; exits 1 if any byte check failed.
set -uo pipefail
. "$(dirname "$0")/common.sh"
DEVICE=${DEVICE:-cuda:0}
DURATION=${DURATION:-5s}

echo "== $("$BIN" --version) on $(hostname), device $DEVICE"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

start_cluster 1 4GB
client=(--master-server-address "$MASTER" --metadata-server "$METADATA")

# 1. 64 MiB of random bytes: put from GPU memory, get into GPU memory in another process.
head -c $((64 * 1024 * 1024)) /dev/urandom >"$WORK/value"
"$BIN" kv put gpu-check "$WORK/value" --device "$DEVICE" "${client[@]}" --transfer-timeout 30
put_rc=$?
"$BIN" kv get gpu-check --device "$DEVICE" -o "$WORK/back" "${client[@]}" --transfer-timeout 30
get_rc=$?
cmp -s "$WORK/value" "$WORK/back"
report "64 MiB put from $DEVICE, get into $DEVICE (another process), bytes equal" $((put_rc + get_rc + $?)) "put rc $put_rc, get rc $get_rc"

# 2. 4 KiB and 32 MiB through pinned host memory (same-host shared memory to the node).
for verb in put get; do
  out=$("$BIN" bench "$verb" --device "$DEVICE" --sizes 32M --duration "$DURATION" --verify --json "${client[@]}")
  rc=$?
  report "bench $verb --device 32 MiB ran, no errors" $((rc)) "rc $rc"
  # Staged: one PCIe copy (~12-25 GB/s) plus one memcpy into the node (~10 GB/s): a few GB/s at least.
  gbps_check "bench $verb --device $DEVICE 32 MiB" "$(json_field "$out" gbPerS)" 2
  host=$("$BIN" bench "$verb" --sizes 32M --duration "$DURATION" --json "${client[@]}")
  echo "  same run, host memory: $(json_field "$host" gbPerS) GB/s"
done

echo "== GPUDirect (dma-buf) needs an RDMA NIC: run tests/hw/rdma.sh with DEVICE set on such a host."
[ "$FAILED" -eq 0 ] && echo "gpu.sh: all byte checks passed" || { echo "gpu.sh: $FAILED check(s) failed"; exit 1; }

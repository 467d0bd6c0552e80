#!/usr/bin/env bash
# RDMA on real NICs (libibverbs and a device in /sys/class/infiniband): the raw engine's speed
# against line rate, then put/get through a cluster over RDMA with every byte checked, and with
# DEVICE=cuda:N also GPUDirect (GPU memory registered by dma-buf).
# Usage: tests/hw/rdma.sh                  one host: target and initiator on the same NICs (loopback)
#        SEGMENT_ID=<host:port> tests/hw/rdma.sh   initiator against a target started elsewhere with
#        mooncake bench transfer --mode target --protocol rdma --metadata_server P2PHANDSHAKE
# DEVICE_NAME=mlx5_0,mlx5_1 selects NICs (default: every active one). Exits 1 if a byte check failed.
set -uo pipefail
. "$(dirname "$0")/common.sh"
DEVICE_NAME=${DEVICE_NAME:-}
DURATION=${DURATION:-5s}

echo "== $("$BIN" --version) on $(hostname)"
rate_gbps=0
if ! ls /sys/class/infiniband >/dev/null 2>&1; then
  # Only the tests' fake libibverbs (MOONCAKE_LIBIBVERBS) has devices without sysfs: no line rate then.
  [ -n "${MOONCAKE_LIBIBVERBS:-}" ] || { echo "no /sys/class/infiniband: this host has no RDMA device"; exit 2; }
  echo "  no /sys/class/infiniband; devices from MOONCAKE_LIBIBVERBS=$MOONCAKE_LIBIBVERBS (line rate unknown)"
fi
for dev in /sys/class/infiniband/*; do
  [ -e "$dev" ] || continue
  name=$(basename "$dev")
  [ -n "$DEVICE_NAME" ] && [[ ",$DEVICE_NAME," != *",$name,"* ]] && continue
  rate=$(cat "$dev/ports/1/rate" 2>/dev/null || echo "0 Gb/sec")
  state=$(cat "$dev/ports/1/state" 2>/dev/null || echo "?")
  echo "  $name: $rate, $state"
  case "$state" in *ACTIVE*) rate_gbps=$((rate_gbps + ${rate%% *})) ;; esac
done
# The target: 90 % of line rate (Mooncake's published 87 GB/s on 4 x 200 Gb/s is 87 %).
expected=$(awk -v g="$rate_gbps" 'BEGIN { printf "%.1f", g / 8 * 0.9 }')

segment=${SEGMENT_ID:-}
if [ -z "$segment" ]; then
  "$BIN" bench transfer --mode target --protocol rdma --device_name "$DEVICE_NAME" --buffer_size 4GB >"$WORK/target.log" 2>&1 &
  target=$!
  for _ in $(seq 1 60); do grep -q "target ready" "$WORK/target.log" && break; sleep 0.5; done
  segment=$(sed -n 's/.*target ready: segment \([^,]*\),.*/\1/p' "$WORK/target.log")
  [ -n "$segment" ] || { cat "$WORK/target.log"; exit 1; }
fi
for op in write read; do
  out=$("$BIN" bench transfer --mode initiator --protocol rdma --device_name "$DEVICE_NAME" --segment_id "$segment" \
    --operation "$op" --block_size 65536 --batch_size 128 --threads 8 --duration "${DURATION%s}" --json)
  report "bench transfer $op, no failed requests" $? "$(json_field "$out" failedRequests) failed"
  gbps_check "bench transfer $op 64 KiB x 128 x 8 threads (all NICs together)" "$(json_field "$out" gbPerS)" "$expected"
done
[ -n "${target:-}" ] && kill "$target" 2>/dev/null

# put/get through a cluster over RDMA (nodes on this host, client forced off shared memory).
start_cluster 2 4GB --protocol rdma ${DEVICE_NAME:+--device-name "$DEVICE_NAME"}
client=(--master-server-address "$MASTER" --metadata-server "$METADATA" --protocol rdma --store-memcpy off)
for verb in put get; do
  out=$("$BIN" bench "$verb" --sizes 4K,1M,32M,128M --duration "$DURATION" --verify --json "${client[@]}")
  report "bench $verb over RDMA, every byte verified" $? "errors: $(printf '%s' "$out" | grep -c '"VERIFY_MISMATCH"') mismatches"
  echo "$out" | grep -E '"(sizeBytes|gbPerS|p50Us)"' | paste - - - | sed 's/^/  /'
done
if [ -n "${DEVICE:-}" ]; then
  head -c $((64 * 1024 * 1024)) /dev/urandom >"$WORK/value"
  "$BIN" kv put gpudirect "$WORK/value" --device "$DEVICE" "${client[@]}" && "$BIN" kv get gpudirect --device "$DEVICE" -o "$WORK/back" "${client[@]}"
  cmp -s "$WORK/value" "$WORK/back"
  report "GPUDirect: 64 MiB put from $DEVICE, get into $DEVICE (another process), bytes equal" $? ""
  for verb in put get; do
    out=$("$BIN" bench "$verb" --device "$DEVICE" --sizes 32M --duration "$DURATION" --verify --json "${client[@]}")
    gbps_check "bench $verb --device $DEVICE over RDMA (GPUDirect)" "$(json_field "$out" gbPerS)" "$expected"
  done
fi
[ "$FAILED" -eq 0 ] && echo "rdma.sh: all byte checks passed" || { echo "rdma.sh: $FAILED check(s) failed"; exit 1; }

#!/usr/bin/env bash
# Data parallelism on shaped links: R = 1, 2, 4 replicas of one stage, each replica a host of its own (a
# network namespace) whose link to the switch is shaped to a fixed bandwidth with tc (tbf, both ways; an
# optional netem delay), the coordinator on a host of its own, unshaped:
#
#   coord 10.78.0.1 ──┐
#   w0    10.78.0.10 ─┤ (BW_MBIT each way)
#   w1    10.78.0.11 ─┼── br0 (namespace sw)
#   …                 │
#
# Every run trains CONFIG (configs/tiny.yaml) as one stage × R replicas with R × ROWS rows per step (each
# replica's work stays the same: weak scaling; ROWS a multiple of MICRO, the micro-batches per replica), CURVE as in production. What it reports per R, over the steps after
# WARMUP (the final checkpoint is outside that window):
#   - bytes per replica per step: the reduce's own counters in metrics.jsonl when the workers log them
#     (fields with "reduce" and "sent"/"received"/"bytes" in their name), else the host's interface counters
#     (its switch port, sampled every 0.1 s, aligned with the steps' end times): everything the host sent and
#     received, control messages and heartbeats included;
#   - the reduce time: the workers' reduce time when logged, else their wait_ms (one stage: no neighbours,
#     so all its waiting is the reduce); against the model 2·(R−1)/R·|g|/bandwidth, |g| = 4 bytes per
#     parameter of the run's final checkpoint;
#   - the share of the reduce hidden behind compute: 1 − (time a replica was blocked on the reduce) / (reduce
#     time). With the star reduce after the last backward pass nothing overlaps, so it is 0 by construction
#     unless the workers log an overlapped reduce time beside their blocked time.
# Deletes the namespaces and stops its processes whatever happens.
#
#   cluster/bench/data-parallel.sh            (as root: needs CAP_NET_ADMIN)
#   BW_MBIT=100 BURST=32kb DELAY_MS=0 REPLICAS="1 2 4" STEPS=30 WARMUP=5 ROWS=8 CONFIG=configs/tiny.yaml OUT=file.json \
#     cluster/bench/data-parallel.sh
#
# KEEP=1 keeps the run folders (logs, metrics) of a run that succeeded.
# UGEN_BIN: folder with ugen-coord and ugen-worker (default: .build/release if built, else .build/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
say() { echo "data-parallel: $*" >&2; }
die() { echo "data-parallel: FAILED: $*" >&2; exit 1; }

BW_MBIT=${BW_MBIT:-100}
DELAY_MS=${DELAY_MS:-0}
REPLICAS=${REPLICAS:-"1 2 4"}
STEPS=${STEPS:-30}
ROWS=${ROWS:-8}
# Micro-batches per replica: only the step's last micro-batch's backward can hide the reduce (no gradient
# is final before it), so 1 (the default) gives the reduce the whole backward pass to hide behind.
MICRO=${MICRO:-1}
BURST=${BURST:-32kb}
CONFIG=${CONFIG:-$repo/configs/tiny.yaml}
WARMUP=${WARMUP:-5}
DATA=${DATA:-$repo/data/tokenized}
OUT=${OUT:-}
[ "$(id -u)" = 0 ] || die "network namespaces need root (CAP_NET_ADMIN); run as root"
for c in ip tc unshare python3; do command -v "$c" >/dev/null || die "$c is missing (apt-get install iproute2 util-linux python3)"; done
if [ -z "${UGEN_BIN:-}" ]; then
  UGEN_BIN=$repo/.build/debug
  [ -x "$repo/.build/release/ugen-worker" ] && [ -x "$repo/.build/release/ugen-coord" ] && UGEN_BIN=$repo/.build/release
fi
UGEN_BIN=$(cd "$UGEN_BIN" 2>/dev/null && pwd) || die "UGEN_BIN: no such folder"  # the hosts run in other directories
[ -x "$UGEN_BIN/ugen-coord" ] && [ -x "$UGEN_BIN/ugen-worker" ] || die "no ugen-coord/ugen-worker in $UGEN_BIN (swift build -c release)"
[ -f "$DATA/train.h5" ] || die "$DATA/train.h5 missing (make data, or DATA=folder)"
max_r=0; for r in $REPLICAS; do [ "$r" -gt "$max_r" ] && max_r=$r; done

tag=ugendp$$
sw=$tag-sw
hosts=(coord); for ((i = 0; i < max_r; i++)); do hosts+=("w$i"); done
declare -A addr=([coord]=10.78.0.1)
. cluster/netns/switch.sh  # (the working directory is the repository)
for ((i = 0; i < max_r; i++)); do addr[w$i]=10.78.0.$((10 + i)); done
port=5556
work=$(mktemp -d /tmp/ugen-data-parallel.XXXXXX)
pids=()
sampler=""

stop_pids() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}
cleanup() {
  local rc=$?
  set +e
  [ -n "$sampler" ] && stop_pids "$sampler"
  stop_pids "${pids[@]}"
  wait 2>/dev/null
  for h in "${hosts[@]}"; do ip netns del "$tag-$h" 2>/dev/null; done
  ip netns del "$sw" 2>/dev/null
  if ip netns list | grep -q "^$tag-"; then echo "data-parallel: FAILED: namespaces left" >&2; rc=1; fi
  if [ "$rc" = 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$work"; elif [ "$rc" = 0 ]; then say "kept $work (KEEP)"; else
    for f in "$work"/*/*/log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
    echo "data-parallel: kept $work for inspection" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the network: a bridge in its own namespace, one veth per host, worker links shaped both ways -------
shape() {  # shape NAMESPACE DEVICE: tbf at BW_MBIT (behind a netem delay when DELAY_MS > 0)
  local ns=$1 dev=$2 parent="root"
  if [ "$DELAY_MS" != 0 ]; then
    ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem delay "${DELAY_MS}ms" \
      || die "tc netem is not available in this kernel (sch_netem); run with DELAY_MS=0"
    parent="parent 1:1"
  fi
  # burst: small (a burst runs at the veth's speed, faster than the model assumes); latency bounds the queue.
  ip netns exec "$ns" tc qdisc add dev "$dev" $parent handle 10: tbf rate "${BW_MBIT}mbit" burst "$BURST" latency 200ms \
    || die "tc tbf failed on $dev in $ns (sch_tbf missing?)"
}
# host → switch and switch → host, for the workers' links.
shape_host() { [ "$2" = coord ] || { shape "$1" eth0; shape "$sw" "port-$2"; }; }
netns_build shape_host
say "${#hosts[@]} hosts; worker links shaped to $BW_MBIT Mbit/s each way$([ "$DELAY_MS" = 0 ] || echo ", netem delay $DELAY_MS ms")"

# --- keys --------------------------------------------------------------------------------------------
keys=$work/keys
mkdir -p "$keys"
"$UGEN_BIN/ugen-coord" keygen --out "$keys" coordinator "${hosts[@]:1}" >/dev/null

on() {  # on HOST DIR COMMAND...: COMMAND in HOST's namespace (HOST as host name), in DIR, in the background
  local h=$1 dir=$2; shift 2
  (cd "$dir" && exec ip netns exec "$tag-$h" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$h" "$@") >"$dir/log" 2>&1 &
  pids+=($!)
}

# --- one run per replica count ----------------------------------------------------------------------
runs=()
for r in $REPLICAS; do
  dir=$work/r$r
  mkdir -p "$dir/coord/authorized"
  for ((i = 0; i < r; i++)); do mkdir -p "$dir/w$i"; cp -p "$keys/w$i.key" "$keys/coordinator.pub" "$dir/w$i/"; cp -p "$keys/w$i.pub" "$dir/coord/authorized/"; done
  cp -p "$keys/coordinator.key" "$dir/coord/"
  # The switch's port counters, every 0.1 s: "TIME port-h rx_bytes tx_bytes" (rx at the port = sent by the host).
  (while :; do
     t=$(date +%s.%N)
     ip netns exec "$sw" cat /proc/net/dev | awk -v t="$t" '$1 ~ /^port-/ { sub(":", "", $1); print t, $1, $2, $10 }'
     sleep 0.1
   done) >"$dir/counters" 2>/dev/null &
  sampler=$!
  pids=()
  on coord "$dir/coord" "$UGEN_BIN/ugen-coord" start --config "$CONFIG" --run "$dir/coord/run" \
    --bind "tcp://${addr[coord]}:$port" --key coordinator.key --authorized-keys authorized \
    --set data.dir="$DATA" --set train.steps="$STEPS" --set train.checkpoint_every=0 --set cluster.stages=1 \
    --set cluster.replicas="$r" --set cluster.micro_batches="$MICRO" --set data.batch_rows=$((ROWS * r)) --set cluster.lost_after_s=30
  coord_pid=${pids[0]}
  for ((i = 0; i < r; i++)); do
    on "w$i" "$dir/w$i" "$UGEN_BIN/ugen-worker" join --coord "tcp://${addr[coord]}:$port" --key "w$i.key" \
      --coord-key coordinator.pub --advertise "${addr[w$i]}" --name "w$i" --give-up-after 60
  done
  say "R = $r: training $STEPS steps"
  for _ in $(seq 3000); do kill -0 "$coord_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$coord_pid" 2>/dev/null && die "R = $r: the coordinator has not finished after 300 s"
  rc=0; wait "$coord_pid" || rc=$?
  [ "$rc" = 0 ] || die "R = $r: ugen-coord exited with $rc"
  stop_pids "$sampler"; sampler=""
  stop_pids "${pids[@]:1}"
  grep -q "\"kind\":\"finished\",\"step\":$STEPS" "$dir/coord/run/events.jsonl" || die "R = $r: no finished event"
  runs+=("$r=$dir")
done

python3 "$repo/cluster/bench/data_parallel_report.py" --bandwidth-mbit "$BW_MBIT" --warmup "$WARMUP" \
  ${OUT:+--json "$OUT"} "${runs[@]}"

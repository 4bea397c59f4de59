#!/usr/bin/env bash
# Several hosts on one machine: three network namespaces, each a host with its own address, host name
# and folder, joined by veth pairs to a bridge that lives in a fourth namespace (a switch; the machine's
# own network and firewall are not touched):
#
#   coord 10.77.0.1 ──┐
#   w1    10.77.0.2 ──┼── br0 (namespace sw)
#   w2    10.77.0.3 ──┘
#
# The coordinator binds 10.77.0.1 with CURVE keys; each worker gets only its own secret key and the
# coordinator's public key (copied into its folder as one would scp them), advertises its own address for
# the activations, and never sees the dataset. They train configs/tiny.yaml (2 stages) to the end.
# Fails loudly unless the run finished with a checkpoint, every worker's data socket was on its own
# address, and traffic crossed the switch; deletes the namespaces and stops its processes whatever happens.
#
#   cluster/netns/check.sh        (as root: needs CAP_NET_ADMIN; installs iproute2 when missing)
#
# UGEN_BIN: folder with ugen-coord and ugen-worker (default: .build/debug, built when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
now() { date +%s%3N; }
since() { local d=$(( $(now) - $1 )); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }
start=$(now)
say() { echo "netns-check: $*"; }
die() { echo "netns-check: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "network namespaces need root (CAP_NET_ADMIN); run as root"
missing=""
for c in ip unshare ps pgrep; do command -v "$c" >/dev/null || missing="$missing $c"; done
if [ -n "$missing" ]; then
  say "installing iproute2 util-linux procps (missing:$missing)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends iproute2 util-linux procps >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2 util-linux procps >/dev/null; }
fi
UGEN_BIN=${UGEN_BIN:-$repo/.build/debug}
if [ ! -x "$UGEN_BIN/ugen-coord" ] || [ ! -x "$UGEN_BIN/ugen-worker" ]; then
  say "building the debug binaries"; swift build >/dev/null
fi
[ -f data/tokenized/train.h5 ] || { say "data/tokenized missing: make data"; make data >/dev/null; }

# Names unique to this run, so two checks (or a leftover) never collide.
tag=ugen$$
sw=$tag-sw
hosts=(coord w1 w2)
declare -A addr=([coord]=10.77.0.1 [w1]=10.77.0.2 [w2]=10.77.0.3)
. cluster/netns/switch.sh  # (the working directory is the repository)
port=5555
work=$(mktemp -d /tmp/ugen-netns-check.XXXXXX)
pids=()

cleanup() {
  local rc=$? p left=""
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  for h in "${hosts[@]}"; do ip netns del "$tag-$h" 2>/dev/null; done
  ip netns del "$sw" 2>/dev/null
  # Nothing may be left: no namespace, no link, no process of this check.
  if ip netns list | grep -q "^$tag-"; then echo "netns-check: FAILED: namespaces left: $(ip netns list | grep "^$tag-")" >&2; rc=1; fi
  for p in "${pids[@]}" $(pgrep -f -- "$work" 2>/dev/null); do
    s=$(ps -o stat= -p "$p" 2>/dev/null) && [[ $s != Z* ]] && left="$left $p"
  done
  if [ -n "$left" ]; then echo "netns-check: FAILED: processes left behind:" >&2; ps -o pid,args -p "${left# }" >&2; rc=1; fi
  if [ "$rc" = 0 ]; then rm -rf "$work"; else
    for f in "$work"/*/log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    echo "netns-check: kept $work for inspection" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the network -------------------------------------------------------------------------------------
t=$(now)
netns_build
say "namespaces up: $(ip netns list | grep -c "^$tag-") ($(since "$t") s)"

# --- keys: made once, then each host gets only what it needs ----------------------------------------
mkdir -p "$work/keygen" "$work/coord/authorized" "$work/w1" "$work/w2"
"$UGEN_BIN/ugen-coord" keygen --out "$work/keygen" coordinator w1 w2 >/dev/null
cp -p "$work/keygen/coordinator.key" "$work/coord/"
cp -p "$work/keygen/w1.pub" "$work/keygen/w2.pub" "$work/coord/authorized/"
for w in w1 w2; do cp -p "$work/keygen/$w.key" "$work/keygen/coordinator.pub" "$work/$w/"; done
rm -rf "$work/keygen"

# on HOST DIR COMMAND...: runs COMMAND in HOST's namespace, with HOST as host name, in DIR, in the background.
on() {
  local h=$1 dir=$2; shift 2
  (cd "$dir" && exec ip netns exec "$tag-$h" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$h" "$@") >"$dir/log" 2>&1 &
  pids+=($!)
}

# --- the run ------------------------------------------------------------------------------------------
t=$(now)
on coord "$work/coord" "$UGEN_BIN/ugen-coord" start --config "$repo/configs/tiny.yaml" --run "$work/coord/run" \
  --bind "tcp://${addr[coord]}:$port" --key coordinator.key --authorized-keys authorized \
  --set data.dir="$repo/data/tokenized" --set train.steps=8 --set train.checkpoint_every=4
coord_pid=${pids[0]}
for w in w1 w2; do
  on "$w" "$work/$w" "$UGEN_BIN/ugen-worker" join --coord "tcp://${addr[coord]}:$port" \
    --key "$w.key" --coord-key coordinator.pub --advertise "${addr[$w]}" --name "$w" --give-up-after 30
done
for _ in $(seq 900); do kill -0 "$coord_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$coord_pid" 2>/dev/null && die "the coordinator has not finished after 90 s"
rc=0; wait "$coord_pid" || rc=$?
[ "$rc" = 0 ] || die "ugen-coord exited with $rc"
for p in "${pids[@]:1}"; do
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && die "a worker is still running 10 s after the run finished"
  rc=0; wait "$p" || rc=$?
  [ "$rc" = 0 ] || die "a worker exited with $rc"
done
elapsed=$(since "$t")

# --- what must hold -----------------------------------------------------------------------------------
run=$work/coord/run
grep -q "run finished at step 8" "$work/coord/log" || die "the coordinator did not say the run finished"
grep -q '"kind":"finished","step":8' "$run/events.jsonl" || die "no finished event at step 8"
l=$(cat "$run/checkpoints/latest" 2>/dev/null) || die "no checkpoints/latest"
[ -s "$run/checkpoints/$l" ] || die "latest names $l, which does not exist"
grep -q "listening on tcp://${addr[coord]}:$port (CURVE" "$work/coord/log" || die "the coordinator did not listen with CURVE on ${addr[coord]}"
for w in w1 w2; do
  grep -q "data socket tcp://${addr[$w]}:" "$work/$w/log" || die "$w's data socket is not on ${addr[$w]}"
  grep -q "\"kind\":\"join\",\"worker\":\"$w\",\"host\":\"$w\"" "$run/events.jsonl" || die "no join of $w from host $w"
  grep -q "shutdown: run finished at step 8" "$work/$w/log" || die "$w did not hear that the run finished"
done
# Every host sent its share through the switch (batches from the coordinator; activations, gradients and
# checkpointed parameters from the workers: megabytes).
for h in "${hosts[@]}"; do
  bytes=$(ip -n "$sw" -s -j link show "port-$h" | grep -o '"rx":{"bytes":[0-9]*' | grep -o '[0-9]*$')
  [ "${bytes:-0}" -gt 10000 ] || die "only ${bytes:-0} bytes from $h crossed the switch"
  traffic="${traffic:-}$h $((bytes / 1000)) kB, "
done
say "run: 2 workers in their own namespaces trained 8 steps over CURVE to $l ($elapsed s; sent: ${traffic%, })"
say "passed in $(since "$start") s (before tear-down)"

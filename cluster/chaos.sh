#!/usr/bin/env bash
# Chaos: SIGKILL a random local worker at a random moment, N times in one run, and check that the run
# finishes with the same losses, to the bit, as an uninterrupted run of the same config.
#
#   cluster/chaos.sh                          # 3 kills, configs/tiny.yaml, 120 steps
#   KILLS=5 STEPS=200 cluster/chaos.sh
#
# Environment: BIN (folder with ugen-coord and ugen-worker; default .build/release, else .build/debug),
# CONFIG (default configs/tiny.yaml), KILLS (3), STEPS (120), EVERY (checkpoint_every, 10), STAGES (2),
# SEED (of the chaos; default random, printed), OUT (default a temporary folder, removed on success).
# The coordinator restarts its killed local workers (cluster.max_restarts) and goes back to the last
# checkpoint; the comparison reads the losses as text from metrics.jsonl, so "equal" means every digit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$([ -x .build/release/ugen-coord ] && echo .build/release || echo .build/debug)}
CONFIG=${CONFIG:-configs/tiny.yaml}
KILLS=${KILLS:-3}
STEPS=${STEPS:-120}
EVERY=${EVERY:-10}
STAGES=${STAGES:-2}
SEED=${SEED:-$RANDOM}
OUT=${OUT:-$(mktemp -d /tmp/ugen-chaos.XXXXXX)}
RANDOM=$SEED
[ -x "$BIN/ugen-coord" ] || { echo "chaos: $BIN/ugen-coord not found (swift build, or set BIN)" >&2; exit 1; }
sets=(--set "train.steps=$STEPS" --set "train.checkpoint_every=$EVERY" --set "cluster.stages=$STAGES"
      --set "cluster.lost_after_s=1.5" --set "cluster.max_restarts=$((KILLS + 1))")
start() { exec "$BIN/ugen-coord" start --config "$CONFIG" --run "$1" --local-workers "$STAGES" --bind tcp://127.0.0.1:0 "${sets[@]}"; }
steps_done() { local n; n=$(grep -c '"step"' "$1/metrics.jsonl" 2>/dev/null || true); echo "${n:-0}"; }
losses() { grep -o '"loss":[-0-9.e]*' "$1/metrics.jsonl"; }

echo "chaos: seed $SEED, $KILLS kills, $STEPS steps of $CONFIG on $STAGES local workers, in $OUT"
t0=$(date +%s.%N)
(start "$OUT/straight") > "$OUT/straight.log" 2>&1 || { echo "chaos: the uninterrupted run failed; see $OUT/straight.log" >&2; exit 1; }
t1=$(date +%s.%N)

start "$OUT/chaos" > "$OUT/chaos.log" 2>&1 &
coord=$!
for i in $(seq 1 "$KILLS"); do
    # A random step in the i-th of KILLS equal parts of the run, then a random moment within the next
    # tenth of a second (a tiny-config step takes a few milliseconds: a longer pause could let the run end).
    span=$(( STEPS * 85 / 100 ))  # the last part of the run is left for the final recovery
    lo=$(( (i - 1) * span / KILLS )); hi=$(( i * span / KILLS ))
    target=$(( lo + 1 + RANDOM % (hi - lo) ))
    while [ "$(steps_done "$OUT/chaos")" -lt "$target" ]; do
        kill -0 "$coord" 2>/dev/null || { echo "chaos: the run ended before kill $i" >&2; exit 1; }
        sleep 0.02
    done
    sleep "0.$(printf '%03d' $((RANDOM % 100)))"
    workers=()
    for _ in $(seq 100); do  # a killed worker may be between death and restart
        mapfile -t workers < <(pgrep -P "$coord" -f ugen-worker || true)
        [ "${#workers[@]}" -gt 0 ] && break
        sleep 0.05
    done
    [ "${#workers[@]}" -gt 0 ] || { echo "chaos: no worker to kill at kill $i" >&2; exit 1; }
    victim=${workers[$((RANDOM % ${#workers[@]}))]}
    kill -KILL "$victim"
    date +%s.%N >> "$OUT/kill-times"
    echo "chaos: kill $i: SIGKILL worker pid $victim at step $(steps_done "$OUT/chaos")"
done
wait "$coord" || { echo "chaos: the chaos run failed; see $OUT/chaos.log" >&2; exit 1; }
t2=$(date +%s.%N)

lost=$(grep -c '"kind":"lost"' "$OUT/chaos/events.jsonl" || true)
resumed=$(grep -c '"kind":"resume"' "$OUT/chaos/events.jsonl" || true)
final_a=$(losses "$OUT/straight" | tail -1); final_b=$(losses "$OUT/chaos" | tail -1)
printf 'chaos: uninterrupted %.1f s, with %d kills %.1f s; %d workers declared lost, %d resumes\n' \
    "$(awk "BEGIN{print $t1 - $t0}")" "$KILLS" "$(awk "BEGIN{print $t2 - $t1}")" "$lost" "$resumed"
echo "chaos: final ${final_a#\"loss\":} uninterrupted, ${final_b#\"loss\":} with kills"
if ! diff <(losses "$OUT/straight") <(losses "$OUT/chaos") > /dev/null; then
    echo "chaos: FAILED: the losses differ from the uninterrupted run (runs kept in $OUT)" >&2; exit 1
fi
[ "$lost" -ge "$KILLS" ] || { echo "chaos: FAILED: $KILLS kills but only $lost losses recorded ($OUT)" >&2; exit 1; }
echo "chaos: OK: all $STEPS losses equal to the bit"
# Per kill: time from SIGKILL to the "lost" event, from there to the first step trained again, and the
# steps trained twice (from the checkpoint gone back to, up to the step the worker died in).
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
kills = [float(t) for t in open(out + "/kill-times")]
ev = [json.loads(l) for l in open(out + "/chaos/events.jsonl")]
# metrics.jsonl was rewritten after each resume; its time stamps are those of the steps that count
met = [json.loads(l) for l in open(out + "/chaos/metrics.jsonl")]
lost = [e for e in ev if e["kind"] == "lost"]
resumes = [e for e in ev if e["kind"] == "resume"]
print("chaos: kill  detected after  training again after  steps redone")
for i, (k, l) in enumerate(zip(kills, lost)):
    r = next((e for e in resumes if e["time"] >= l["time"]), None)
    again = next((m for m in met if r and m["step"] == r["step"] + 1), None)
    redo = l["step"] - r["step"] if r else float("nan")
    print(f"chaos: {i + 1:4d}  {l['time'] - k:12.2f} s  {(again['time'] - l['time']) if again else float('nan'):17.2f} s  {redo:13d}")
PY
[ -n "${KEEP:-}" ] || rm -rf "$OUT"

#!/usr/bin/env bash
# Checks the dashboard's web page for real: a loop keeps appending synthetic (well-formed) records to a run
# directory, `ugen-coord dashboard --web` follows it, and headless Chromium loads the page, takes a
# screenshot and dumps the DOM. The DOM must show a step at least as new as the last one written before
# Chromium started, and the three task names. Exits non-zero otherwise; stops everything it started.
#
#   cluster/dashboard-check.sh [OUT_DIR]     (default: a temporary directory; the screenshot is OUT_DIR/dashboard.png)
#
# DASHBOARD overrides the command that runs the dashboard (default: build ugen-coord and run its subcommand).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t ugen-dashboard-check.XXXXXX)}
mkdir -p "$out"
run="$out/run"
rm -rf "$run"; mkdir -p "$run"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if ! command -v chromium >/dev/null; then
  echo "installing chromium"
  (apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }) >/dev/null
fi

if [ -z "${DASHBOARD:-}" ]; then
  swift build --product ugen-coord >/dev/null
  DASHBOARD="$(swift build --show-bin-path)/ugen-coord dashboard"
fi

# A run that grows by a step every 0.1 s, with joins, checkpoints and one unreadable line.
cat > "$run/config.yaml" <<'YAML'
train:
  steps: 100000
vocab_schedule:
  kind: progressive
  text_only_steps: 40
cluster:
  stages: 2
  replicas: 2
  schedule: 1f1b
YAML
python3 - "$run" <<'PY' &
import json, math, random, sys, time
run = sys.argv[1]
random.seed(7)
K, t0 = 64, time.time()
def emit(f, o): f.write(json.dumps(o) + "\n"); f.flush()
with open(run + "/metrics.jsonl", "a") as m, open(run + "/events.jsonl", "a") as ev:
    for w in range(4):
        emit(ev, {"time": t0, "kind": "join", "worker": w, "host": f"node-{w // 2}", "stage": w % 2, "replica": w // 2})
    step = 0
    while True:
        loss = 5.5 * math.exp(-step / 150) + 1.6 + random.gauss(0, 0.04)
        r = {"step": step, "loss": loss, "lr": 3e-4 * min(1, (step + 1) / 30), "grad_norm": 0.8 + random.random() * 0.4,
             "tokens": step * 8192, "tokens_per_s": 15000 + random.gauss(0, 400), "time": time.time(),
             "active_visual_ids": 0 if step < 40 else min(K, 8 + (step - 40) // 10 * 4), "visual_codebook": K,
             "loss_text": loss * 0.92 + random.gauss(0, 0.03),
             "stages": [{"stage": w % 2, "replica": w // 2, "worker": w, "forward_ms": 12 + w + random.random(),
                         "backward_ms": 24 + w + random.random(), "wait_ms": 1.5 + random.random()} for w in range(4)]}
        if step >= 40 and step % 2 == 0: r["loss_img2txt"] = loss * 1.05 + random.gauss(0, 0.05)
        if step >= 40 and step % 3 == 0: r["loss_txt2img"] = loss * 1.35 + random.gauss(0, 0.05)
        emit(m, r)
        if step == 20: m.write("{not json\n"); m.flush()
        if step and step % 100 == 0: emit(ev, {"time": time.time(), "kind": "checkpoint", "step": step, "path": f"checkpoints/step-{step:06d}.h5"})
        if step == 40: emit(ev, {"time": time.time(), "kind": "phase", "message": "images start: 8 visual ids active"})
        step += 1
        time.sleep(0.1 if step > 200 else 0.002)   # a quick history, then a live run
PY
pids+=($!)

# --web 0 picks a free port; the dashboard prints the address it serves.
$DASHBOARD --run "$run" --web 0 > "$out/dashboard.log" 2>&1 &
pids+=($!)
url=""
for _ in $(seq 100); do
  url=$(grep -o 'http://[0-9.]*:[0-9]*/' "$out/dashboard.log" | head -1 || true)
  [ -n "$url" ] && curl -fs "${url}api/state" >/dev/null && break
  url=""; sleep 0.1
done
[ -n "$url" ] || { echo "FAIL: the dashboard did not start serving"; cat "$out/dashboard.log"; exit 1; }
sleep 2   # let the history arrive and the live part begin

last_step() { tail -n 1 "$run/metrics.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["step"])'; }
before=$(last_step)
# Chromium's virtual clock stands still while a request is open, and an event stream never ends, so the
# headless loads use the page's polling mode (/?poll); the stream itself is checked with curl below.
chrome=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,900 --virtual-time-budget=3000)
timeout 60 "${chrome[@]}" --screenshot="$out/dashboard.png" "${url}?poll" >/dev/null 2>&1
timeout 60 "${chrome[@]}" --dump-dom "${url}?poll" > "$out/dom.html" 2>/dev/null
after=$(last_step)

fail=0
# The event stream: a full state first, then updates carrying steps newer than any written before.
timeout 5 curl -sN "${url}events" > "$out/events.txt" || true
grep -q '"type":"state"' "$out/events.txt" || { echo "FAIL: /events sent no state"; fail=1; }
newest=$(grep '"type":"update"' "$out/events.txt" | grep -o '"step":[0-9]*' | grep -o '[0-9]*' | sort -n | tail -1 || true)
if [ -z "$newest" ] || [ "$newest" -le "$after" ]; then
  echo "FAIL: /events pushed no step after $after (newest: '${newest}')"; fail=1
fi
shown=$(grep -o '<b id="step">[0-9]*</b>' "$out/dom.html" | grep -o '[0-9][0-9]*' || true)
if [ -z "$shown" ] || [ "$shown" -lt "$before" ] || [ "$shown" -gt "$after" ]; then
  echo "FAIL: page shows step '${shown}', expected between $before and $after"; fail=1
fi
for name in "text" "image→text" "text→image" "Workers" "Events" "checkpoint" "node-1" "unreadable line"; do
  grep -q -- "$name" "$out/dom.html" || { echo "FAIL: '$name' not in the page"; fail=1; }
done
[ -s "$out/dashboard.png" ] || { echo "FAIL: no screenshot"; fail=1; }
[ $fail = 0 ] && echo "OK: page shows step $shown (written: $before..$after), tasks and workers; /events pushed up to step $newest; screenshot $out/dashboard.png"
exit $fail

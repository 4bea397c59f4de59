#!/usr/bin/env bash
# Checks cluster/slurm/ugen.sbatch on a real Slurm: brings up a one-node Slurm (slurm-up.sh), and
#   1. a 3-task job (coordinator + 2 CURVE workers) trains configs/tiny.yaml for 8 steps: COMPLETED, exit 0,
#      RUN/checkpoints/latest names a checkpoint, events.jsonl has `finished` at step 8;
#   2. a longer job is stopped with scancel: a checkpoint before the end and no `finished`; then
#      `scontrol requeue` runs it again under the same id, and it resumes from latest to the end;
#   3. a job whose run fails (an unknown config key) ends FAILED with the coordinator's exit code 1, in
#      seconds (its workers are not left waiting for Slurm's KillWait).
# Tears Slurm down whatever happens and fails if any daemon or ugen process is left behind.
# Exits non-zero, loudly, if anything above does not hold.
#
#   cluster/slurm/check.sh        (as root; installs slurmctld slurmd slurm-client munge when missing)
#
# UGEN_BIN: folder with ugen-coord and ugen-worker (default: .build/debug, built when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
now() { date +%s%3N; }
since() { local d=$(( $(now) - $1 )); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }  # seconds since a now
start=$(now)
say() { echo "slurm-check: $*"; }
die() { echo "slurm-check: FAILED: $*" >&2; exit 1; }

# --- what it needs -----------------------------------------------------------------------------------
missing=""
pkgs="slurmctld slurmd slurm-client munge procps"
for c in slurmctld slurmd sbatch munged mungekey ps pgrep; do command -v "$c" >/dev/null || missing="$missing $c"; done
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || die "missing$missing; install them as root: apt-get install -y --no-install-recommends $pkgs"
  say "installing $pkgs (missing:$missing)"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; }
fi
[ "$(id -u)" = 0 ] || die "the one-node Slurm of slurm-up.sh runs its daemons as root (SlurmUser=root); run as root"
UGEN_BIN=${UGEN_BIN:-$repo/.build/debug}
if [ ! -x "$UGEN_BIN/ugen-coord" ] || [ ! -x "$UGEN_BIN/ugen-worker" ]; then
  say "building the debug binaries"; swift build >/dev/null
fi
[ -f data/tokenized/train.h5 ] || { say "data/tokenized missing: make data"; make data >/dev/null; }

# --- Slurm up, and always down ------------------------------------------------------------------------
work=$(mktemp -d /tmp/ugen-slurm-check.XXXXXX)
steps_before=$(pgrep -x slurmstepd || true)
slurm=""
pids=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$slurm" ]; then
    pids=$(cat "$slurm"/run/*.bgpid 2>/dev/null | tr '\n' ' ')
    bash cluster/slurm/slurm-down.sh "$slurm"
  fi
  # Nothing may survive: neither the daemons (by their PIDs) nor any process started for this check.
  # (Zombies do not count: init reaps the daemons slurm-up.sh left to it in its own time.)
  local left="" p s
  for p in $pids $(pgrep -f -- "$work" 2>/dev/null) $(pgrep -x slurmstepd 2>/dev/null | grep -vxF -e "${steps_before:-none}"); do
    s=$(ps -o stat= -p "$p" 2>/dev/null) && [[ $s != Z* ]] && left="$left $p"
  done
  if [ -n "$left" ]; then
    echo "slurm-check: FAILED: processes left behind:" >&2; ps -o pid,args -p "${left# }" >&2; rc=1
  fi
  if [ "$rc" = 0 ]; then rm -rf "$work"; else
    for f in "$work"/*.out; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 25 "$f" >&2; }; done
    echo "slurm-check: kept $work for inspection" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

slurm=$(bash cluster/slurm/slurm-up.sh "$work/slurm")
export SLURM_CONF=$slurm/slurm.conf
say "Slurm up in $slurm ($(sinfo -h -N -o '%N %t %c CPUs'))"

job_field() { scontrol show job -o "$1" | grep -o "$2=[^ ]*" | cut -d= -f2; }
# wait_for JOB REGEX SECONDS: until the job's state matches (COMPLETING does not count as ended).
wait_for() {
  local s
  for _ in $(seq $(($3 * 10))); do
    s=$(job_field "$1" JobState)
    [[ $s =~ ^($2)$ ]] && return 0
    sleep 0.1
  done
  die "job $1 still $s after $3 s (wanted $2)"
}
ENDED='COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED'
submit() {  # submit NAME [ugen-coord args...]: prints the job id
  local name=$1; shift
  UGEN_BIN=$UGEN_BIN UGEN_RUN=$work/$name sbatch --parsable --ntasks=3 --job-name="$name" \
    --output="$work/$name.out" cluster/slurm/ugen.sbatch configs/tiny.yaml \
    --set data.dir="$repo/data/tokenized" "$@"
}
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
events() { grep -c "\"kind\":\"$2\"" "$work/$1/events.jsonl" 2>/dev/null || true; }
latest_ok() {  # latest_ok NAME: RUN/checkpoints/latest names an existing checkpoint; prints its name
  local l
  l=$(cat "$work/$1/checkpoints/latest" 2>/dev/null) || die "$1: no checkpoints/latest"
  [ -s "$work/$1/checkpoints/$l" ] || die "$1: latest names $l, which does not exist"
  echo "$l"
}

# --- 1. a job trains to the end -----------------------------------------------------------------------
t=$(now)
job=$(submit finish --set train.steps=8 --set train.checkpoint_every=4)
wait_for "$job" "$ENDED" 90
state=$(job_field "$job" JobState); code=$(job_field "$job" ExitCode)
[ "$state" = COMPLETED ] && [ "$code" = 0:0 ] || die "job $job (finish) ended $state with exit code $code"
l=$(latest_ok finish)
grep -q '"kind":"finished","step":8' "$work/finish/events.jsonl" || die "finish: no finished event at step 8"
grep -q 'run finished at step 8' "$work/finish.out" || die "finish: ugen-coord did not say the run finished"
[ "$(grep -c 'joining tcp://' "$work/finish.out")" = 2 ] || die "finish: expected 2 workers joining"
grep -q 'CURVE, 2 admitted worker keys' "$work/finish.out" || die "finish: the coordinator did not use CURVE"
say "1. job $job: COMPLETED 0:0, 8 steps, latest=$l ($(since $t) s)"

# --- 2. scancel saves a checkpoint; a requeued job resumes from it ------------------------------------
t=$(now)
job=$(submit stop --set train.steps=60 --set train.checkpoint_every=1000)
for _ in $(seq 600); do
  [ "$(lines "$work/stop/metrics.jsonl")" -ge 3 ] && break
  [[ $(job_field "$job" JobState) =~ ^($ENDED)$ ]] && die "job $job (stop) ended before it could be cancelled"
  sleep 0.1
done
[ "$(lines "$work/stop/metrics.jsonl")" -ge 3 ] || die "job $job (stop) trained no 3 steps in 60 s"
scancel "$job"
wait_for "$job" CANCELLED 30
l=$(latest_ok stop)
stopped=${l#step-}; stopped=$((10#${stopped%.h5}))
[ "$stopped" -ge 3 ] && [ "$stopped" -lt 60 ] || die "stop: the checkpoint after scancel is $l (wanted a step in 3..59)"
[ "$(events stop finished)" = 0 ] || die "stop: the cancelled run says finished"
grep -q "run stopped at step $stopped" "$work/stop.out" || die "stop: ugen-coord did not stop cleanly at step $stopped"
say "2. job $job: scancel -> CANCELLED, final checkpoint $l"
# The job reads CANCELLED before its processes are gone; a requeue launched while the node still cleans
# up the old batch step fails at once. Wait for the node to be idle again.
for _ in $(seq 300); do [ "$(sinfo -h -N -o '%t')" = idle ] && break; sleep 0.1; done
[ "$(sinfo -h -N -o '%t')" = idle ] || die "the node is $(sinfo -h -N -o '%t'), not idle, 30 s after scancel"
scontrol requeue "$job"
scontrol update JobId="$job" StartTime=now  # a requeued job is otherwise held ~2 minutes (BeginTime)
for _ in $(seq 300); do [ "$(job_field "$job" Restarts)" -ge 1 ] && break; sleep 0.1; done
wait_for "$job" "$ENDED" 90
state=$(job_field "$job" JobState); code=$(job_field "$job" ExitCode)
[ "$state" = COMPLETED ] && [ "$code" = 0:0 ] || die "job $job (stop, requeued) ended $state with exit code $code"
grep -q "\"kind\":\"resume\",\"step\":$stopped," "$work/stop/events.jsonl" || die "stop: no resume event at step $stopped"
grep -q '"kind":"finished","step":60' "$work/stop/events.jsonl" || die "stop: the requeued run did not finish at step 60"
l=$(latest_ok stop)
[ "$l" = step-00000060.h5 ] || die "stop: latest is $l after the requeued run"
say "   requeued: resumed at step $stopped, COMPLETED 0:0 at step 60 ($(since $t) s)"

# --- 3. the job's exit code is the run's --------------------------------------------------------------
t=$(now)
job=$(submit fail --set train.no_such_key=1)
wait_for "$job" "$ENDED" 30
state=$(job_field "$job" JobState); code=$(job_field "$job" ExitCode)
[ "$state" = FAILED ] && [ "$code" = 1:0 ] || die "job $job (fail) ended $state with exit code $code (wanted FAILED 1:0)"
grep -q "unknown config key 'train.no_such_key'" "$work/fail.out" || die "fail: the error is not in the job's output"
say "3. job $job: unknown config key -> FAILED 1:0 ($(since $t) s)"

say "passed in $(since $start) s (before tear-down)"

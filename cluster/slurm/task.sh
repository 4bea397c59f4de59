#!/usr/bin/env bash
# One Slurm task of a UGen job (started by ugen.sbatch through srun; arguments: CONFIG [ugen-coord options]).
# SLURM_PROCID 0 runs the coordinator; every other task joins it as a worker.
#
# Environment (set by ugen.sbatch): UGEN_BIN, UGEN_RUN, UGEN_KEYS, UGEN_COORD_HOST, UGEN_COORD_PORT,
# UGEN_EXIT_FILE;
# optional UGEN_ADVERTISE.
set -euo pipefail
config=$1; shift
workers=$((SLURM_NTASKS - 1))

if [ "$SLURM_PROCID" = 0 ]; then
  # ugen-coord waits for cluster.stages × cluster.replicas workers, so the allocation decides the stage
  # count: one pipeline of N stages (the caller may still override cluster.* with --set after CONFIG).
  resume=()
  if [ -f "$UGEN_RUN/checkpoints/latest" ]; then
    echo "task 0: $UGEN_RUN/checkpoints/latest exists (restart ${SLURM_RESTART_COUNT:-0}); resuming"
    resume=(--resume latest)
  fi
  # Not exec: the coordinator receives Slurm's SIGTERM itself (all processes of the step do); this shell
  # waits for it, records its exit code for ugen.sbatch (the job's exit code is the run's), and when the
  # run failed, kills the workers at once instead of leaving them to Slurm's KillWait (they ignore SIGTERM).
  trap : TERM INT
  rc=0
  "$UGEN_BIN/ugen-coord" start --config "$config" --run "$UGEN_RUN" \
    --bind "tcp://0.0.0.0:$UGEN_COORD_PORT" \
    --key "$UGEN_KEYS/coordinator.key" --authorized-keys "$UGEN_KEYS/workers" \
    --set "cluster.stages=$workers" --set cluster.replicas=1 \
    "${resume[@]}" "$@" || rc=$?
  echo "$rc" > "$UGEN_EXIT_FILE"
  if [ "$rc" != 0 ]; then
    echo "task 0: ugen-coord exited with $rc; stopping the workers" >&2
    scancel --signal=KILL "$SLURM_JOB_ID.$SLURM_STEP_ID" || true
  fi
  exit "$rc"
else
  # scancel / requeue send SIGTERM to every task at once. The coordinator answers it by saving a
  # checkpoint at the next step boundary, which needs the workers' parameters: so workers ignore SIGTERM
  # (the ignore survives exec) and stop when the coordinator tells them to, or at Slurm's SIGKILL.
  trap '' TERM
  # Neighbouring stages reach this worker's data socket (a random port) at this node's host name, unless
  # UGEN_ADVERTISE names another address (e.g. the node's address on the fast network).
  exec "$UGEN_BIN/ugen-worker" join --coord "tcp://$UGEN_COORD_HOST:$UGEN_COORD_PORT" \
    --key "$UGEN_KEYS/workers/worker-$SLURM_PROCID.key" --coord-key "$UGEN_KEYS/coordinator.pub" \
    --advertise "${UGEN_ADVERTISE:-$(hostname)}" --threads "${SLURM_CPUS_PER_TASK:-1}" \
    --name "slurm-$SLURM_JOB_ID-$SLURM_PROCID"
fi

#!/usr/bin/env bash
# Stops what slurm-up.sh started (jobs first, then the daemons by their recorded PIDs) and removes DIR.
set -u
dir=$1
export SLURM_CONF=$dir/slurm.conf
scancel --user=root >/dev/null 2>&1 || true
for d in slurmd slurmctld munged; do
  pid=$(cat "$dir/run/$d.bgpid" 2>/dev/null) || continue
  kill "$pid" 2>/dev/null || true
done
for d in slurmd slurmctld munged; do
  pid=$(cat "$dir/run/$d.bgpid" 2>/dev/null) || continue
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
done
rm -rf "$dir"

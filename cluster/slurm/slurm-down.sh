#!/usr/bin/env bash
# Stops what slurm-up.sh started (jobs first, then the daemons by their recorded PIDs) and removes DIR.
set -u
dir=$1
export SLURM_CONF=$dir/slurm.conf
scancel --user=root >/dev/null 2>&1 || true
# Alive and not a zombie (a killed daemon can stay a zombie until init reaps it; kill -0 still succeeds).
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }
for d in slurmd slurmctld munged; do
  pid=$(cat "$dir/run/$d.bgpid" 2>/dev/null) || continue
  kill "$pid" 2>/dev/null || true
done
for d in slurmd slurmctld munged; do
  pid=$(cat "$dir/run/$d.bgpid" 2>/dev/null) || continue
  for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && kill -9 "$pid" 2>/dev/null
done
rm -rf "$dir"
exit 0

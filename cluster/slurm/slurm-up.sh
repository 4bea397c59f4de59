#!/usr/bin/env bash
# Brings up a real one-node Slurm (munge + slurmctld + slurmd from Debian's packages) in a temporary
# directory, without systemd or cgroups, for tests. Prints the directory; source DIR/env to use it.
# Tear down with slurm-down.sh DIR. Why each setting: Documentation/operations.md, "A test Slurm on one machine".
set -euo pipefail
dir=${1:-$(mktemp -d /tmp/ugen-slurm.XXXXXX)}
mkdir -p "$dir"/{munge,spool/ctld,spool/d,log,run}
chmod 755 "$dir" "$dir/munge"
host=$(hostname -s)

mungekey --create --keyfile="$dir/munge/munge.key" --force >/dev/null 2>&1
chmod 600 "$dir/munge/munge.key"
munged -F --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" --pid-file="$dir/run/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" --force >/dev/null 2>&1 &
echo $! > "$dir/run/munged.bgpid"
for _ in $(seq 50); do munge -n -S "$dir/munge/munge.socket" 2>/dev/null | unmunge -S "$dir/munge/munge.socket" >/dev/null 2>&1 && break; sleep 0.1; done

cat > "$dir/slurm.conf" <<CONF
ClusterName=ugentest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=bf_interval=1
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env"
export SLURM_CONF=$dir/slurm.conf

slurmctld -D -c -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
echo $! > "$dir/run/slurmctld.bgpid"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
slurmd -D -N "$host" -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
echo $! > "$dir/run/slurmd.bgpid"
for _ in $(seq 150); do sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^idle' && break; sleep 0.1; done
sinfo -h -N -o '%t' | grep -qE '^idle' || { echo "slurm-up: node never became idle" >&2; cat "$dir/log/slurmd.out" >&2; exit 1; }
echo "$dir"

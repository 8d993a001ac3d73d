#!/usr/bin/env bash
# A single-node SLURM cluster and an sshd on 127.0.0.1, for the integration test of the CalcJobs through
# core.ssh + core.slurm. Debian 12, as root, without systemd. Everything it owns lives in $SLURM_SSH_DIR;
# the daemons' PIDs are listed in $SLURM_SSH_DIR/pids for stop.sh.
set -euo pipefail
DIR=${SLURM_SSH_DIR:-/tmp/aiida-cgcnn-slurm}
PORT=${SLURM_SSH_PORT:-2222}
mkdir -p "$DIR"
: > "$DIR/pids"

retry_until() {  # retry_until SECONDS COMMAND...
  local tries=$(( $1 * 5 )); shift
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "gave up waiting for: $*" >&2
  return 1
}

if [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] || [ ! -x /usr/sbin/munged ] || [ ! -x /usr/sbin/sshd ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge openssh-server >/dev/null
fi

# munge: SLURM's authentication
[ -s /etc/munge/munge.key ] || /usr/sbin/mungekey --create
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  retry_until 10 sh -c 'munge -n | unmunge'
fi
echo "munged $(cat /run/munge/munged.pid)" >> "$DIR/pids"

# SLURM: one node, this machine, 127.0.0.1 only; whole-minute time limits, enforced every 30 s;
# memory limits enforced by polling
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n1)
install -d -m 0755 /etc/slurm /run/slurm /var/log/slurm
install -d -m 0700 /var/spool/slurmctld /var/spool/slurmd
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=aiida-cgcnn
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# memory is a consumable resource and jobacct_gather polls it every 2 s: a job over its --mem is killed
# (OverMemoryKill; this machine has no cgroup delegation for task/cgroup), as on a production cluster
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
DefMemPerCPU=2048
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
KillWait=30
OverTimeLimit=0
MailProg=/bin/true
CommunicationParameters=NoInAddrAny
${NODE} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
if ! scontrol ping >/dev/null 2>&1; then
  /usr/sbin/slurmctld
  retry_until 30 scontrol ping
fi
echo "slurmctld $(cat /run/slurm/slurmctld.pid)" >> "$DIR/pids"
if [ ! -s /run/slurm/slurmd.pid ] || ! kill -0 "$(cat /run/slurm/slurmd.pid)" 2>/dev/null; then
  /usr/sbin/slurmd
fi
retry_until 60 sh -c 'sinfo -h -o %T | grep -qE "^(idle|mixed|allocated)$"'
echo "slurmd $(cat /run/slurm/slurmd.pid)" >> "$DIR/pids"

# sshd on 127.0.0.1:$PORT with its own configuration and key; it does not touch ~root/.ssh
install -d -m 0755 /run/sshd
ssh-keygen -A >/dev/null
[ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C aiida-cgcnn-ci -f "$DIR/id_ed25519"
cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys" && chmod 0600 "$DIR/authorized_keys"
cat > "$DIR/sshd_config" <<CONF
Port ${PORT}
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_rsa_key
PidFile ${DIR}/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile ${DIR}/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
SLURM_SSH_DIR=$DIR bash "$(dirname "$0")/start-sshd.sh"

# the environment the test reads
cat > "$DIR/env" <<CONF
AIIDA_CGCNN_SLURM_DIR=$DIR
AIIDA_CGCNN_SLURM_PORT=$PORT
CONF
echo "SLURM + sshd ready in $DIR (port $PORT)"

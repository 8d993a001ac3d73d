#!/usr/bin/env bash
# Start the test cluster's sshd on 127.0.0.1 with the configuration start.sh wrote in $SLURM_SSH_DIR,
# unless it runs, and name its PID in $SLURM_SSH_DIR/pids for stop.sh. start.sh calls it, and so does
# the test that restarts the SSH server (tests/integration/test_fault_ssh_restart.py).
set -euo pipefail
DIR=${SLURM_SSH_DIR:-/tmp/aiida-cgcnn-slurm}
if [ ! -s "$DIR/sshd.pid" ] || ! kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; then
  rm -f "$DIR/sshd.pid"  # a killed sshd leaves its PID file
  install -d -m 0755 /run/sshd
  /usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"
  # sshd writes its PID file once it listens
  for _ in $(seq 50); do [ -s "$DIR/sshd.pid" ] && break; sleep 0.2; done
  [ -s "$DIR/sshd.pid" ] || { echo "sshd did not start: see $DIR/sshd.log" >&2; exit 1; }
fi
# after a restart the new PID replaces the old one
touch "$DIR/pids"
sed -i '/^sshd /d' "$DIR/pids"
echo "sshd $(cat "$DIR/sshd.pid")" >> "$DIR/pids"

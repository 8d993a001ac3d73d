#!/usr/bin/env bash
# Stop what start.sh started, by PID, newest first.
DIR=${SLURM_SSH_DIR:-/tmp/aiida-cgcnn-slurm}
[ -f "$DIR/pids" ] || exit 0
tac "$DIR/pids" | while read -r name pid; do
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && echo "$name ($pid) still running" >&2
done
rm -f "$DIR/pids" "$DIR/env"

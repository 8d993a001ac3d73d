#!/usr/bin/env bash
# Stop what start.sh started, newest first: RabbitMQ and PostgreSQL through their own tools (a fast
# shutdown: connected clients are disconnected), then any PID still alive.
DIR=${PRODUCTION_DIR:-/tmp/aiida-cgcnn-production}
[ -f "$DIR/pids" ] || exit 0
rm -f "$DIR/env"
# (the commands in the loop read no stdin: it is the list)
tac "$DIR/pids" | while read -r name pid; do
  case "$name" in
    rabbitmq) (. "$DIR/rabbitmq/rabbitmq-env.sh" && rabbitmqctl -q stop "$RABBITMQ_PID_FILE") </dev/null >/dev/null 2>&1 ;;
    postgresql-*) pg_ctlcluster "${name#postgresql-}" main stop -m fast </dev/null >/dev/null 2>&1 ;;
  esac
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && echo "$name ($pid) still running" >&2
done
rm -f "$DIR/pids"

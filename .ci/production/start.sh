#!/usr/bin/env bash
# PostgreSQL and RabbitMQ on 127.0.0.1, for the tests (and the load benchmark) that run the plugin on a
# production profile: ``core.psql_dos`` storage with the ``core.rabbitmq`` broker. Debian 12, as root,
# without systemd; idempotent (services already up are left running). What it owns lives in
# $PRODUCTION_DIR: the daemons' PIDs in ``pids`` (for stop.sh), RabbitMQ's configuration, data and logs,
# and, written last and only when both services answer, ``env`` (shell KEY=value lines).
set -euo pipefail
DIR=${PRODUCTION_DIR:-/tmp/aiida-cgcnn-production}
PGPORT=${PRODUCTION_PG_PORT:-5432}
RMQPORT=${PRODUCTION_RABBITMQ_PORT:-5672}
ROLE=aiida_cgcnn
install -d -m 0755 "$DIR"
: > "$DIR/pids"

retry_until() {  # retry_until SECONDS COMMAND...
  local tries=$(( $1 * 2 )); shift
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "gave up waiting for: $*" >&2
  return 1
}

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ] \
  || [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql rabbitmq-server >/dev/null
fi

# PostgreSQL: Debian's newest installed major version, cluster "main", TCP on 127.0.0.1 only (the
# default pg_hba.conf asks a password there: scram-sha-256)
PGVERSION=$(ls /usr/lib/postgresql | sort -V | tail -n1)
pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$PGVERSION main" || pg_createcluster "$PGVERSION" main >/dev/null
# (Debian's postgresql.conf includes conf.d/, read after it)
cat > "/etc/postgresql/$PGVERSION/main/conf.d/aiida-cgcnn.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
CONF
if ! pg_ctlcluster "$PGVERSION" main status >/dev/null 2>&1; then
  pg_ctlcluster "$PGVERSION" main start
fi
retry_until 60 runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p "$PGPORT"
echo "postgresql-$PGVERSION $(head -n1 "/var/run/postgresql/$PGVERSION-main.pid")" >> "$DIR/pids"

# the role the profiles use: a password (made once, kept in $DIR) and the right to create databases,
# one per test session
[ -s "$DIR/pgpassword" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/pgpassword")
PGPASSWORD_VALUE=$(cat "$DIR/pgpassword")
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -p "$PGPORT" -v role="$ROLE" -v password="$PGPASSWORD_VALUE" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password')
\gexec
SQL

# RabbitMQ: its own configuration, data and logs under $DIR/rabbitmq; AMQP, epmd and Erlang distribution
# on 127.0.0.1 only. consumer_timeout: RabbitMQ >= 3.8.15 closes a channel whose message is not
# acknowledged within 30 minutes, and an AiiDA process's task stays unacknowledged while it runs;
# AiiDA's documentation asks to raise it (here 1000 hours, as it suggests).
RMQ="$DIR/rabbitmq"
install -d -o rabbitmq -g rabbitmq -m 0755 "$RMQ" "$RMQ/mnesia" "$RMQ/log"
cat > "$RMQ/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:${RMQPORT}
loopback_users.guest = true
consumer_timeout = 3600000000
CONF
chmod 0644 "$RMQ/rabbitmq.conf"
export RABBITMQ_NODENAME=rabbit@localhost
export RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq.conf"
export RABBITMQ_MNESIA_BASE="$RMQ/mnesia"
export RABBITMQ_LOG_BASE="$RMQ/log"
export RABBITMQ_PID_FILE="$RMQ/rabbitmq.pid"
export RABBITMQ_DIST_PORT=$(( RMQPORT + 20000 ))
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_ADDRESS=127.0.0.1
# what rabbitmqctl needs to find this node (stop.sh and a user's shell read it)
cat > "$RMQ/rabbitmq-env.sh" <<CONF
export RABBITMQ_NODENAME=$RABBITMQ_NODENAME
export RABBITMQ_CONFIG_FILE=$RABBITMQ_CONFIG_FILE
export RABBITMQ_MNESIA_BASE=$RABBITMQ_MNESIA_BASE
export RABBITMQ_LOG_BASE=$RABBITMQ_LOG_BASE
export RABBITMQ_PID_FILE=$RABBITMQ_PID_FILE
export RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT
export ERL_EPMD_ADDRESS=$ERL_EPMD_ADDRESS
CONF
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  # the Debian wrapper runs the server as the rabbitmq user (su keeps these variables)
  nohup rabbitmq-server > "$RMQ/log/server.out" 2>&1 < /dev/null &
fi
retry_until 180 rabbitmqctl -q await_startup --timeout 10
# epmd, Erlang's port mapper, is started by the node and outlives it: stop.sh ends it too
for pid in $(pidof epmd || true); do echo "epmd $pid" >> "$DIR/pids"; done
echo "rabbitmq $(cat "$RMQ/rabbitmq.pid")" >> "$DIR/pids"
if [ "$(rabbitmqctl -q eval 'application:get_env(rabbit, consumer_timeout).')" != "{ok,3600000000}" ]; then
  echo "RabbitMQ did not take consumer_timeout from $RMQ/rabbitmq.conf" >&2
  exit 1
fi

# the environment the tests and the benchmark read; written last, in one move
cat > "$DIR/env.tmp" <<CONF
PGHOST=127.0.0.1
PGPORT=$PGPORT
PGUSER=$ROLE
PGPASSWORD=$PGPASSWORD_VALUE
RABBITMQ_HOST=127.0.0.1
RABBITMQ_PORT=$RMQPORT
RABBITMQ_USER=guest
RABBITMQ_PASSWORD=guest
RABBITMQ_VHOST=/
CONF
chmod 0600 "$DIR/env.tmp"
mv "$DIR/env.tmp" "$DIR/env"
echo "PostgreSQL $PGVERSION (127.0.0.1:$PGPORT, role $ROLE) + RabbitMQ (127.0.0.1:$RMQPORT) ready in $DIR"

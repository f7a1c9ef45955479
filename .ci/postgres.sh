#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on a loopback port and print its URL. Needs Debian's postgresql.
# Usage: env=$(.ci/postgres.sh start); eval "$env"   -> exports GIFTREC_TEST_DATABASE_URL and PGDATA_DIR
#        .ci/postgres.sh stop
# The server runs without fsync and with asynchronous commits (a throw-away test database), unless
# PG_DURABLE=1: then with PostgreSQL's defaults (fsync, synchronous commit), as a production server.
set -euo pipefail
port=${PGPORT:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=${PGDATA_DIR:-/tmp/giftrec-ci-pg}
case "${1:-start}" in
start)
  if [[ -f $dir/postmaster.pid ]] && kill -0 "$(head -1 "$dir/postmaster.pid")" 2>/dev/null; then
    :
  else
    rm -rf "$dir"; mkdir -p "$dir"; chown postgres:postgres "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir" -A trust -U postgres -E UTF8 >/dev/null
    opts="-c listen_addresses=127.0.0.1 -p $port -k $dir"
    [[ -n ${PG_DURABLE:-} ]] || opts+=" -c fsync=off -c synchronous_commit=off"
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -o "$opts" start >/dev/null
  fi
  runuser -u postgres -- "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='giftrec_test'" | grep -q 1 ||
    runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres giftrec_test
  echo "export GIFTREC_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$port/giftrec_test"
  echo "export PGDATA_DIR=$dir"
  ;;
stop)
  [[ -d $dir ]] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -m fast stop >/dev/null || true
  ;;
esac

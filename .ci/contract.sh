#!/usr/bin/env bash
# Contract test of the /v1 API against its own OpenAPI document, with schemathesis.
#
# Serves the app on a free loopback port (gunicorn, a throw-away SQLite database with the bundled sample
# imported, demo dates seeded and a model trained, as `make run` does), then runs schemathesis on every
# operation twice: with a server key, and with a widget key from its allowed origin; and on the selections
# (which only email keys may read) with an email key. It fails on any 5xx and on any response whose status,
# content type, headers or body the document does not describe.
#
# Usage: .ci/contract.sh [extra schemathesis options]
#   MAX_EXAMPLES (default 50) test cases per operation and phase; SEED (default 1) makes a CI run repeatable:
#   try others by hand (SEED=$RANDOM MAX_EXAMPLES=300 takes about four minutes). Schemathesis runs in the
#   temporary folder: give report options absolute paths.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/.venv/bin}
MAX_EXAMPLES=${MAX_EXAMPLES:-50}
SEED=${SEED:-1}

work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
    kill "$server"
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export GIFTREC_DATABASE_URL="sqlite:///$work/giftrec.db"
export GIFTREC_SERVER_INSTANCE_DIR="$work/instance"
export GIFTREC_MODEL_ARTIFACT_DIR="$work/models"
# Thousands of requests a minute from one key: the limit is tested in tests/api, not here.
export GIFTREC_API_RATE_LIMIT="1000000/minute"
port=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
export GIFTREC_SERVER_BASE_URL="$base"

echo "== contract: the app on $base (database and model in a temporary folder)"
"$BIN/giftrec" db upgrade >/dev/null
"$BIN/giftrec" import orders data/online_retail_sample.csv.gz --format online-retail --quiet >/dev/null
"$BIN/giftrec" demo seed >/dev/null
"$BIN/giftrec" train >/dev/null
server_key=$("$BIN/giftrec" keys create --scope server --name contract 2>/dev/null)
widget_key=$("$BIN/giftrec" keys create --scope widget --origin "$base" --name contract 2>/dev/null)
email_key=$("$BIN/giftrec" keys create --scope email --name contract 2>/dev/null)

"$BIN/giftrec" serve --host 127.0.0.1 --port "$port" --workers 2 >"$work/server.log" 2>&1 &
server=$!
ready() { "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1"; }
# Ready once is enough: each of the two workers answers /health/ready for itself, and a second look could
# reach the other one still ranking its customers ahead (503 "warming", while it already serves the API).
got_ready=0
for _ in $(seq 150); do
  ready "$base/health/ready" 2>/dev/null && { got_ready=1; break; }
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
((got_ready)) || { echo "the app did not get ready"; cat "$work/server.log"; exit 1; }

# One worker: with two threads, hypothesis (describing a strategy) hit CPython 3.11's "AST constructor
# recursion depth mismatch" SystemError, reported as a schemathesis runtime error.
run() {  # run NAME schemathesis-options...
  local name=$1
  shift
  echo "== contract: schemathesis with the $name key"
  local started=$SECONDS status=0
  # from the temporary folder, where schemathesis leaves its cache (.schemathesis/)
  (cd "$work" && "$BIN/schemathesis" run "$base/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 \
    --generation-with-security-parameters false --generation-database none \
    --no-color "$@") || status=$?
  echo "   ($name key: $((SECONDS - started)) s)"
  if ((status)); then
    echo "== contract: failed with the $name key; the server's last lines:"
    grep -v '" [23][0-9][0-9] ' "$work/server.log" | tail -40 || true
    exit "$status"
  fi
}

run server -H "X-Api-Key: $server_key" "$@"
run widget -H "X-Api-Key: $widget_key" -H "Origin: $base" "$@"
# Only email keys reach the selections (server and widget keys get 403 there).
run email -H "X-Api-Key: $email_key" --include-tag "Selections (email)" "$@"

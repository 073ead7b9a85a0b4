#!/usr/bin/env bash
# Fuzzes the HTTP API from its own /openapi.json with schemathesis (PyPI): every phase schemathesis has
# (examples, coverage, fuzzing, stateful), every check, as a session (an admin's) and as an API key. Any
# failure — a 5xx, an answer the document does not describe, a request the document allows that the server
# refuses or the other way round — fails the script; so does `tally db audit` afterwards.
#
# Usage: scripts/fuzz-api.sh [MAX_EXAMPLES]   (default 100 per operation and phase)
# Starts its own `tally serve` on a scratch database (on DATABASE_URL's server, or the embedded cluster's).
# schemathesis goes into .build/fuzz-venv the first time. TALLY_BENCH_CONFIG=debug uses the debug build.
# The runs themselves are scripts/schemathesis-run.sh, which the test suite runs too (APIContractTests).
set -euo pipefail
cd "$(dirname "$0")/.."
MAX="${1:-100}"
source Benchmarks/common.sh
scratch_database tally_fuzz
"$TALLY" migrate up --no-backup >/dev/null
"$TALLY" users create --email fuzz@example.com --password fuzz-password --admin >/dev/null
"$TALLY" credits grant --user fuzz@example.com --amount 1000000000 >/dev/null
KEY=$("$TALLY" keys create --user fuzz@example.com --name fuzz | head -1)
PORT=$(free_port)
"$TALLY" serve --port "$PORT" --metrics-port 0 --log-level error &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; drop_scratch_database' EXIT
wait_ready "$PORT"
SESSION=$(curl -sf "http://127.0.0.1:$PORT/v1/auth/login" -d '{"email":"fuzz@example.com","password":"fuzz-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

status=0
FUZZ_LOGIN='{"email":"fuzz@example.com","password":"fuzz-password"}' scripts/schemathesis-run.sh "http://127.0.0.1:$PORT" "$SESSION" "$KEY" "$MAX" || status=1
"$TALLY" db audit || status=1
exit $status

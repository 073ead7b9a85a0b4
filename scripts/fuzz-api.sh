#!/usr/bin/env bash
# Fuzzes the running HTTP API from its own /openapi.json with schemathesis (PyPI): every generated
# request, valid or not, must get a non-5xx answer that conforms to the document.
#
# Usage: scripts/fuzz-api.sh [MAX_EXAMPLES]   (default 100 per operation; DATABASE_URL or the embedded cluster)
# Starts its own `tally serve` on a scratch database, as a session (admin) and then as an API key.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX="${1:-100}"
command -v schemathesis >/dev/null || pip install -q schemathesis
source Benchmarks/common.sh
scratch_database tally_fuzz
"$TALLY" migrate up --no-backup >/dev/null
"$TALLY" users create --email fuzz@example.com --password fuzz-password --admin >/dev/null
"$TALLY" credits grant --user fuzz@example.com --amount 1000000000 >/dev/null
KEY=$("$TALLY" keys create --user fuzz@example.com --name fuzz | head -1)
PORT=$(free_port)
"$TALLY" serve --port "$PORT" --log-level error &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
wait_ready "$PORT"
SESSION=$(curl -sf "http://127.0.0.1:$PORT/v1/auth/login" -d '{"email":"fuzz@example.com","password":"fuzz-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

status=0
for credential in "$SESSION" "$KEY"; do
  schemathesis run "http://127.0.0.1:$PORT/openapi.json" --url "http://127.0.0.1:$PORT" \
    -H "Authorization: Bearer $credential" --max-examples "$MAX" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance || status=1
done
"$TALLY" db audit || status=1
exit $status

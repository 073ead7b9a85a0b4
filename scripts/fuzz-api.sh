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
swift build -c release --product tally >/dev/null
TALLY="$PWD/.build/release/tally"
PSQL=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")")/psql
BASE_URL="${DATABASE_URL:-$("$TALLY" db url)}"
DB=tally_fuzz
URL=$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(u.urlunparse(p._replace(path='/'+sys.argv[2])))" "$BASE_URL" "$DB")
"$PSQL" "$BASE_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export DATABASE_URL="$URL"
"$TALLY" migrate up --no-backup >/dev/null
"$TALLY" users create --email fuzz@example.com --password fuzz-password --admin >/dev/null
"$TALLY" credits grant --user fuzz@example.com --amount 1000000000 >/dev/null
KEY=$("$TALLY" keys create --user fuzz@example.com --name fuzz | head -1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TALLY" serve --port "$PORT" --log-level error &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
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

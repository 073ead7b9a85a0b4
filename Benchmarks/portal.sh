#!/usr/bin/env bash
# Benchmark: the portal's balance page (balance, grants, the burn-down and the spend per key, rendered on the
# server from mustache templates) under 16 concurrent users, each with a session cookie: p50/p99 latency and rate
# from wrk. Beside it, in the same run: the JSON balance and burn-down the page is made of, and pgbench
# select-only with 16 clients on the same PostgreSQL.
#
# Usage: Benchmarks/portal.sh [SECONDS]   (DATABASE_URL or the embedded cluster; needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-10}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
source Benchmarks/common.sh
scratch_database tally_bench_portal
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill -INT "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TALLY" migrate up --no-backup >/dev/null 2>&1
"$TALLY" users create --email bench@example.com --password bench-password >/dev/null
"$TALLY" credits grant --user bench@example.com --amount 1000000 >/dev/null
"$TALLY" credits grant --user bench@example.com --amount 50000 --expires "$(python3 -c "import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(days=5)).strftime('%Y-%m-%dT%H:%M:%SZ'))")" >/dev/null
PORT=$(free_port)
(cd "$WORK" && exec "$TALLY" serve --port "$PORT" --metrics-port 0 --log-level error --unlimited-for-benchmarks) >"$WORK/serve.log" 2>&1 &
SERVER=$!
wait_ready "$PORT"
API="http://127.0.0.1:$PORT"
SESSION=$(curl -sf "$API/v1/auth/login" -d '{"email":"bench@example.com","password":"bench-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
# Five keys and 2,000 spends, so the page has a ledger, a rate and a chart with five series to draw.
for n in 1 2 3 4 5; do
  curl -sf "$API/v1/api-keys" -H "Authorization: Bearer $SESSION" -d "{\"name\":\"key $n\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' >> "$WORK/keys"
done
python3 - "$API" "$WORK/keys" <<'PY'
import json, sys, urllib.request
api, keys = sys.argv[1], open(sys.argv[2]).read().split()
for n in range(2000):
    request = urllib.request.Request(api + "/v1/credits/consume", data=json.dumps({"amount": 1 + n % 7}).encode(),
                                     headers={"Authorization": "Bearer " + keys[n % len(keys)], "Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
PY
curl -sf -o /dev/null "$API/portal" -H "Cookie: tally_session=$SESSION" || { echo "the balance page did not answer 200" >&2; exit 1; }

# run SLUG LABEL PATH HEADER: wrk with 16 connections on 2 threads; prints rate and p50/p99.
run() {
  wrk -t2 -c16 -d"${SECONDS_EACH}s" --latency -H "$4" "$API$3" > "$WORK/$1.txt"
  local rate p50 p99
  rate=$(awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/$1.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$1.txt")
  printf "%-44s %10s/s   p50 %8s   p99 %8s\n" "$2" "$rate" "$p50" "$p99"
  echo "$rate" > "$WORK/$1.rate"
}
echo "16 concurrent users for ${SECONDS_EACH} s each (wrk -t2 -c16), release build:"
run page "portal balance page (HTML, 2 charts)" /portal "Cookie: tally_session=$SESSION"
run burndown "GET /v1/credits/burndown (JSON)" /v1/credits/burndown "Authorization: Bearer $SESSION"
run balance "GET /v1/credits/balance (JSON)" /v1/credits/balance "Authorization: Bearer $SESSION"
run keys "portal keys page (HTML)" /portal/keys "Cookie: tally_session=$SESSION"
"$PGBENCH" -i -q "$DATABASE_URL" >/dev/null 2>&1
"$PGBENCH" -n -S -c 16 -j 2 -T "$SECONDS_EACH" "$DATABASE_URL" 2>/dev/null > "$WORK/pgbench.txt"
PGRATE=$(awk '/^tps/ {print $3; exit}' "$WORK/pgbench.txt")
printf "%-44s %10s/s\n" "pgbench select-only (16 clients)" "$PGRATE"
ratio() { python3 -c "print(round($(cat "$WORK/$1.rate") / $2, 3))"; }
echo "ratios: page / pgbench select-only $(ratio page "$PGRATE"), page / JSON balance $(ratio page "$(cat "$WORK/balance.rate")"), page / JSON burn-down $(ratio page "$(cat "$WORK/burndown.rate")")"
[ -n "${KEEP:-}" ] || drop_scratch_database

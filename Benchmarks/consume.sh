#!/usr/bin/env bash
# Benchmark: the consume path, POST /v1/credits/consume over real HTTP, against pgbench's TPC-B on the
# same PostgreSQL, in the same run.
#
# Two shapes of load, each for SECONDS with CLIENTS concurrent connections (wrk):
#   hot:    every request spends from one team account, rotating over CLIENTS keys of that team: the
#           account row lock serialises them (the "hot team account under many keys" case);
#   spread: requests rotate over CLIENTS keys on CLIENTS user accounts: no two spends wait for each other.
# Then pgbench TPC-B (-c CLIENTS) in the same database. Each consume is one transaction of about seven
# statements (account lock, key allowance, grants, balance, ledger), a TPC-B transaction is five: the
# ratio says how much of the database's transaction rate the HTTP path turns into spends.
# After the runs, `tally db audit` must pass and the ledger must hold exactly the spends wrk saw answered.
#
# Usage: Benchmarks/consume.sh [CLIENTS] [SECONDS]   (default 16 and 15; DATABASE_URL or the embedded cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${1:-16}"
SECONDS_PER_RUN="${2:-15}"

if ! command -v wrk >/dev/null; then
  echo "Installing wrk (the HTTP load generator)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null
fi
source Benchmarks/common.sh
scratch_database tally_bench_consume
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill -INT "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$TALLY" migrate up --no-backup >/dev/null
export TALLY_BENCH_PASSWORD=bench-password
"$TALLY" users create --email bench-hot@example.com --password "$TALLY_BENCH_PASSWORD" >/dev/null
KEYS=()
for i in $(seq 1 "$CLIENTS"); do
  "$TALLY" users create --email "bench-$i@example.com" --password "$TALLY_BENCH_PASSWORD" >/dev/null
  "$TALLY" credits grant --user "bench-$i@example.com" --amount 1000000000000 >/dev/null
  KEYS+=("$("$TALLY" keys create --user "bench-$i@example.com" --name spread | head -1)")
done

PORT=$(free_port)
"$TALLY" serve --port "$PORT" --log-level error >"$WORK/serve.log" 2>&1 &
SERVER=$!
wait_ready "$PORT"

# The hot team: one account, CLIENTS keys.
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
TOKEN=$(curl -sf "http://127.0.0.1:$PORT/v1/auth/login" -d "{\"email\":\"bench-hot@example.com\",\"password\":\"$TALLY_BENCH_PASSWORD\"}" | json_field '["token"]')
TEAM=$(curl -sf "http://127.0.0.1:$PORT/v1/teams" -H "Authorization: Bearer $TOKEN" -d '{"name":"hot"}' | json_field '["team"]["id"]')
"$TALLY" credits grant --team "$TEAM" --amount 1000000000000 >/dev/null
HOT_KEYS=()
for i in $(seq 1 "$CLIENTS"); do
  HOT_KEYS+=("$(curl -sf "http://127.0.0.1:$PORT/v1/api-keys" -H "Authorization: Bearer $TOKEN" -d "{\"name\":\"hot-$i\",\"team_id\":\"$TEAM\"}" | json_field '["key"]')")
done

# wrk script: POST a 1-credit spend, rotating over the given keys; report non-200 answers.
cat > "$WORK/consume.lua" <<'LUA'
local keys = {}
for k in string.gmatch(os.getenv("BENCH_KEYS"), "%S+") do keys[#keys + 1] = k end
local n = 0
wrk.method = "POST"
wrk.body = '{"amount":1,"description":"bench"}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  wrk.headers["Authorization"] = "Bearer " .. keys[(n % #keys) + 1]
  return wrk.format()
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

# run <label> <keys…>: prints "<spends/s> <p50 ms> <p99 ms> <max ms> <requests> <errors>"
run() {
  local label=$1; shift
  BENCH_KEYS="$*" wrk -t2 -c"$CLIENTS" -d"${SECONDS_PER_RUN}s" --timeout 10s -s "$WORK/consume.lua" "http://127.0.0.1:$PORT/v1/credits/consume" >"$WORK/$label.out"
  awk '/^RESULT/ { printf "%.0f %.2f %.2f %.2f %d %d\n", $2 / ($3 / 1e6), $4, $5, $6, $2, $7 }' "$WORK/$label.out"
}

echo "Consume: $CLIENTS clients, ${SECONDS_PER_RUN}s per run, 2 cores shared by wrk, tally and PostgreSQL"
read -r HOT_RATE HOT_P50 HOT_P99 HOT_MAX HOT_N HOT_ERR < <(run hot "${HOT_KEYS[@]}")
read -r SPREAD_RATE SPREAD_P50 SPREAD_P99 SPREAD_MAX SPREAD_N SPREAD_ERR < <(run spread "${KEYS[@]}")

kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""

"$PGBENCH" -i -q -s 10 "$URL" >/dev/null 2>&1
PGBENCH_TPS=$("$PGBENCH" -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" "$URL" 2>/dev/null | awk -F'= ' '/^tps/ { split($2, a, " "); print a[1]; exit }')

LEDGER=$("$PSQL" "$URL" -tAc "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'")
AUDIT=$("$TALLY" db audit >/dev/null 2>&1 && echo passed || echo FAILED)

printf "\n%-34s %10s %9s %9s %9s %8s\n" "run" "per second" "p50 ms" "p99 ms" "max ms" "errors"
printf "%-34s %10.0f %9.2f %9.2f %9.2f %8d\n" "consume, 1 team account, $CLIENTS keys" "$HOT_RATE" "$HOT_P50" "$HOT_P99" "$HOT_MAX" "$HOT_ERR"
printf "%-34s %10.0f %9.2f %9.2f %9.2f %8d\n" "consume, $CLIENTS accounts" "$SPREAD_RATE" "$SPREAD_P50" "$SPREAD_P99" "$SPREAD_MAX" "$SPREAD_ERR"
printf "%-34s %10.0f\n" "pgbench TPC-B (-c $CLIENTS, scale 10)" "$PGBENCH_TPS"
printf "\nspends/s ÷ TPC-B tps: hot %.2f, spread %.2f\n" \
  "$(echo "$HOT_RATE / $PGBENCH_TPS" | bc -l)" "$(echo "$SPREAD_RATE / $PGBENCH_TPS" | bc -l)"
OK_ANSWERS=$((HOT_N + SPREAD_N - HOT_ERR - SPREAD_ERR))
echo "ledger consume entries: $LEDGER; 200 answers wrk counted: $OK_ANSWERS (a spend in flight when wrk stops is in the ledger but not counted: at most $((2 * CLIENTS))); db audit: $AUDIT"
[ "$AUDIT" = passed ] && [ "$LEDGER" -ge "$OK_ANSWERS" ] && [ "$LEDGER" -le $((OK_ANSWERS + 2 * CLIENTS)) ]

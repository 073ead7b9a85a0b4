#!/usr/bin/env bash
# Benchmark: the credits hot paths over real HTTP against pgbench, on the same PostgreSQL, in one run.
#
#   pgbench    TPC-B (-M prepared), select-only (-S -M prepared) and a one-hot-row script (UPDATE one row +
#              INSERT a history row, -M prepared), each at 16 and 64 clients;
#   consume    POST /v1/credits/consume, hot (one team account spent through N keys) and spread (N accounts),
#              at 16 and 64 connections;
#   balance    GET /v1/credits/balance alone at 16 and 64 connections, and on the hot account while 32
#              connections spend from it;
#   bounds     a path with no route (the HTTP stack alone) and a balance read, each also on a second server
#              without request deadlines and connection limits (`--unlimited-for-benchmarks`) to show what they
#              cost, /healthz (HTTP and one trivial query), and the balance read's statement alone in pgbench.
# Each HTTP run alone on the machine also shows the CPU time per request spent in tally, in PostgreSQL and in
# the rest (wrk, the kernel's network stack, anything else running).
# Each run: rate, p50, p99, max; then the ratios the aims are stated in, the server's peak RSS, `tally db
# audit`, and the check that the ledger holds every spend wrk saw answered 200.
#
# Usage: Benchmarks/credits.sh [SECONDS]   (default 10 per run; DATABASE_URL or the embedded cluster)
# TALLY_BENCH_POOLER=pgbouncer puts PgBouncer (transaction pooling, 20 server connections) between PostgreSQL
# and both tally serve and pgbench (-M extended then: PgBouncer 1.18 does not carry prepared statements over).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
KEYS_PER_SHAPE=64

for tool in wrk bc; do
  command -v "$tool" >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool") >/dev/null
done
source Benchmarks/common.sh
scratch_database tally_bench_credits
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill -INT "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; stop_pooler; rm -rf "$WORK"; }
trap cleanup EXIT

"$TALLY" migrate up --no-backup >/dev/null
start_pooler
PORT=$(free_port)
"$TALLY" serve --port "$PORT" --metrics-port 0 --log-level error >"$WORK/serve.log" 2>&1 &
SERVER=$!
wait_ready "$PORT"
api() { curl -sf "http://127.0.0.1:$PORT$1" "${@:2}"; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Spread: KEYS_PER_SHAPE users, each with credits and a key. Hot: one team, KEYS_PER_SHAPE keys.
echo "Setting up $KEYS_PER_SHAPE accounts and a team with $KEYS_PER_SHAPE keys..."
SPREAD_KEYS=()
for i in $(seq 1 "$KEYS_PER_SHAPE"); do
  "$TALLY" users create --email "bench-$i@example.com" --password bench-password >/dev/null
  TOKEN=$(api /v1/auth/login -d "{\"email\":\"bench-$i@example.com\",\"password\":\"bench-password\"}" | json_field '["token"]')
  "$TALLY" credits grant --user "bench-$i@example.com" --amount 1000000000000 >/dev/null
  SPREAD_KEYS+=("$(api /v1/api-keys -H "Authorization: Bearer $TOKEN" -d '{"name":"spread"}' | json_field '["key"]')")
done
TEAM=$(api /v1/teams -H "Authorization: Bearer $TOKEN" -d '{"name":"hot"}' | json_field '["team"]["id"]')
"$TALLY" credits grant --team "$TEAM" --amount 1000000000000 >/dev/null
HOT_KEYS=()
for i in $(seq 1 "$KEYS_PER_SHAPE"); do
  HOT_KEYS+=("$(api /v1/api-keys -H "Authorization: Bearer $TOKEN" -d "{\"name\":\"hot-$i\",\"team_id\":\"$TEAM\"}" | json_field '["key"]')")
done

# wrk: a request per key in turn (POST a 1-credit spend, or GET the balance); prints counts and latencies.
cat > "$WORK/load.lua" <<'LUA'
local keys = {}
for k in string.gmatch(os.getenv("BENCH_KEYS"), "%S+") do keys[#keys + 1] = k end
local n = 0
if os.getenv("BENCH_METHOD") == "POST" then
  wrk.method = "POST"
  wrk.body = '{"amount":1,"description":"bench"}'
  wrk.headers["Content-Type"] = "application/json"
end
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

# CPU time so far, in clock ticks: "<tally> <PostgreSQL's processes> <all busy CPUs>".
cpu_ticks() {
  echo "$(awk '{ print $14 + $15 }' "/proc/$SERVER/stat")" \
    "$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 == "(postgres)" { s += $14 + $15 } END { print s + 0 }')" \
    "$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)"
}

# http LABEL METHOD PATH CONNECTIONS KEYS…: (on $PORT) "<rate> <p50 ms> <p99 ms> <max ms> <requests> <errors> <CPU µs per
# request: tally> <PostgreSQL> <the rest: wrk, the kernel's network, other processes>"
http() {
  local label=$1 method=$2 path=$3 connections=$4; shift 4
  local before after
  # As pgbench does before each run: vacuum first, so that the previous run's dead rows are not cleaned up
  # (by autovacuum, on the same two cores) during this one.
  "$PSQL" "$URL" -qc "VACUUM ANALYZE" >/dev/null 2>&1
  before=$(cpu_ticks)
  BENCH_METHOD=$method BENCH_KEYS="$*" wrk -t2 -c"$connections" -d"${SECONDS_PER_RUN}s" --timeout 10s -s "$WORK/load.lua" \
    "http://127.0.0.1:$PORT$path" >"$WORK/$label.out"
  after=$(cpu_ticks)
  awk -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" '/^RESULT/ {
    split(before, b, " "); split(after, a, " ")
    us = 1e6 / hz / ($2 > 0 ? $2 : 1); t = a[1] - b[1]; p = a[2] - b[2]; all = a[3] - b[3]
    printf "%.0f %.2f %.2f %.2f %d %d %.0f %.0f %.0f\n", $2 / ($3 / 1e6), $4, $5, $6, $2, $7, t * us, p * us, (all - t - p) * us }' "$WORK/$label.out"
}

declare -A RATE P50 P99 MAX
SPENT_OK=0
record() { # record LABEL "<rate> <p50> <p99> <max> <requests> <errors> [<CPU µs: tally> <PostgreSQL> <rest>]" [spends|together]
  read -r r p5 p9 mx n err ct cp cr <<<"$2"
  RATE[$1]=$r; P50[$1]=$p5; P99[$1]=$p9; MAX[$1]=$mx
  if [ "${3:-}" = spends ]; then SPENT_OK=$((SPENT_OK + n - err)); fi
  local cpu=""
  # CPU per request, for a run alone on the machine (runs side by side share it, and pgbench has no tally).
  if [ -n "${ct:-}" ] && [ "${3:-}" != together ]; then cpu=$(printf "  CPU/req: tally %4d µs, PostgreSQL %4d µs, rest %4d µs" "$ct" "$cp" "$cr"); fi
  printf "  %-44s %9.0f/s  p50 %6.2f  p99 %6.2f  max %7.2f ms  errors %d%s\n" "$1" "$r" "$p5" "$p9" "$mx" "$err" "$cpu"
}

echo "Tally, ${SECONDS_PER_RUN}s per run; wrk, tally and PostgreSQL share $(nproc) cores$([ -n "$POOLER_PID" ] && echo "; through PgBouncer (transaction pooling, 20 server connections)")"
# What bounds the rest: the HTTP stack alone (a path with no route), and with one trivial query (/healthz).
record "no route (404): the HTTP stack, 64 conns" "$(http none GET /v1/no-such-route 64 none)"
# The same on a server without deadlines and connection limits, to show what they cost.
LIMITED_PORT=$PORT LIMITED_SERVER=$SERVER
PORT=$(free_port)
"$TALLY" serve --port "$PORT" --metrics-port 0 --log-level error --unlimited-for-benchmarks >"$WORK/serve-unlimited.log" 2>&1 &
SERVER=$!
wait_ready "$PORT"
record "no route (404), no deadlines or limits, 64 conns" "$(http none-unlimited GET /v1/no-such-route 64 none)"
# And on a route that works: a balance read on each server, one right after the other.
record "balance, no deadlines or limits, 64 conns" "$(http balance-unlimited GET /v1/credits/balance 64 "${SPREAD_KEYS[@]}")"
kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true
PORT=$LIMITED_PORT SERVER=$LIMITED_SERVER
record "balance, with them, right after, 64 conns" "$(http balance-limited GET /v1/credits/balance 64 "${SPREAD_KEYS[@]}")"
record "/healthz: HTTP and SELECT version(), 64 conns" "$(http health GET /healthz 64 none)"
for c in 16 64; do
  record "consume hot, 1 account, $c conns" "$(http hot$c POST /v1/credits/consume "$c" "${HOT_KEYS[@]}")" spends
  record "consume spread, $c accounts, $c conns" "$(http spread$c POST /v1/credits/consume "$c" "${SPREAD_KEYS[@]:0:$c}")" spends
  record "balance, $c conns" "$(http balance$c GET /v1/credits/balance "$c" "${SPREAD_KEYS[@]:0:$c}")"
done
# Reads of the hot account while 32 connections spend from it.
http during-spend POST /v1/credits/consume 32 "${HOT_KEYS[@]}" >"$WORK/during-spend.result" &
LOAD=$!
sleep 1
record "balance of the hot account, 16 conns, while spent" "$(http during-read GET /v1/credits/balance 16 "${HOT_KEYS[@]:0:16}")" together
wait "$LOAD"
record "  (its 32 spending conns)" "$(cut -d" " -f1-6 "$WORK/during-spend.result")" spends
RSS=$(awk '/VmHWM/ { print $2 / 1024 }' "/proc/$SERVER/status")
kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""

LEDGER=$("$PSQL" "$URL" -tAc "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'")
AUDIT=$("$TALLY" db audit >/dev/null 2>&1 && echo passed || echo FAILED)

# pgbench, on the same database: its own tables (scale 10) and a one-row table for the hot-row script.
"$PGBENCH" -i -q -s 10 "$DIRECT_URL" >/dev/null 2>&1
"$PSQL" "$DIRECT_URL" -qc "DROP TABLE IF EXISTS bench_hot, bench_hot_history; CREATE TABLE bench_hot (id int PRIMARY KEY, balance bigint); INSERT INTO bench_hot VALUES (1, 0); CREATE TABLE bench_hot_history (delta int, at timestamptz DEFAULT now())"
cat > "$WORK/hot.sql" <<'SQL'
BEGIN;
UPDATE bench_hot SET balance = balance - 1 WHERE id = 1;
INSERT INTO bench_hot_history (delta) VALUES (-1);
END;
SQL
# pg LABEL CLIENTS ARGS…: pgbench with per-transaction logs, so p50/p99/max come from the same measure as wrk's.
pg() {
  local label=$1 clients=$2; shift 2
  rm -f "$WORK"/pgbench_log.*
  local tps
  tps=$(cd "$WORK" && "$PGBENCH" -c "$clients" -j 2 -T "$SECONDS_PER_RUN" -M "$PGBENCH_MODE" -l "$@" "$URL" 2>/dev/null | awk -F'= ' '/^tps/ { split($2, a, " "); print a[1]; exit }')
  cat "$WORK"/pgbench_log.* | awk '{ print $3 / 1000 }' | sort -n | awk -v tps="$tps" '{ v[NR] = $1 } END {
    printf "%.0f %.2f %.2f %.2f %d 0\n", tps, v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], v[NR], NR }'
}
PGBENCH_MODE=$([ -n "$POOLER_PID" ] && echo extended || echo prepared)
echo "pgbench, ${SECONDS_PER_RUN}s per run, -M $PGBENCH_MODE$([ -n "$POOLER_PID" ] && echo ", through PgBouncer")"
# The balance read's statement alone (as tally_committed_balance, the form it takes behind a pooler), for
# one of the benchmark's accounts and keys: what PostgreSQL can serve of it with no HTTP and no Swift.
READER=$("$PSQL" "$DIRECT_URL" -tAc "SELECT k.user_id || ' ' || k.id FROM api_keys k JOIN user_credits a ON a.user_id = k.user_id WHERE k.revoked_at IS NULL LIMIT 1")
echo "SELECT * FROM tally_committed_balance('${READER% *}'::uuid, NULL, '${READER#* }'::uuid);" > "$WORK/balance.sql"
for c in 16 64; do
  record "pgbench TPC-B, $c clients" "$(pg tpcb$c "$c")"
  record "pgbench the balance statement alone, $c clients" "$(pg balancesql$c "$c" -f "$WORK/balance.sql")"
  record "pgbench select-only, $c clients" "$(pg select$c "$c" -S)"
  record "pgbench one hot row, $c clients" "$(pg hot$c "$c" -f "$WORK/hot.sql")"
done

ratio() { echo "scale=2; ${RATE[$1]} / ${RATE[$2]}" | bc -l; }
echo
echo "Ratios (aims in brackets):"
for c in 16 64; do
  aim=$([ "$c" = 64 ] && echo 2.5 || echo 1.5)
  echo "  $c: consume hot / TPC-B $(ratio "consume hot, 1 account, $c conns" "pgbench TPC-B, $c clients") [≥ $aim]," \
    "spread / TPC-B $(ratio "consume spread, $c accounts, $c conns" "pgbench TPC-B, $c clients") [≥ $aim]," \
    "hot / one-hot-row $(ratio "consume hot, 1 account, $c conns" "pgbench one hot row, $c clients")$([ "$c" = 64 ] && echo " [≥ 6]")," \
    "balance / select-only $(ratio "balance, $c conns" "pgbench select-only, $c clients") [≥ 0.2]"
done
echo "  no route with deadlines and limits / without: $(ratio "no route (404): the HTTP stack, 64 conns" "no route (404), no deadlines or limits, 64 conns") [≥ 0.9];" \
  "balance at 64, with / without: $(ratio "balance, with them, right after, 64 conns" "balance, no deadlines or limits, 64 conns")"
echo "  balance / its statement alone in pgbench: at 16 $(ratio "balance, 16 conns" "pgbench the balance statement alone, 16 clients"), at 64 $(ratio "balance, 64 conns" "pgbench the balance statement alone, 64 clients")"
echo "  p99 ms: consume at 64 hot ${P99["consume hot, 1 account, 64 conns"]}, spread ${P99["consume spread, 64 accounts, 64 conns"]} [≤ 15];" \
  "balance at 16 ${P99["balance, 16 conns"]} [≤ 5], at 64 ${P99["balance, 64 conns"]}, while spent ${P99["balance of the hot account, 16 conns, while spent"]}"
printf "server peak RSS: %.0f MiB\n" "$RSS"
echo "ledger consume entries: $LEDGER; 200 answers wrk counted: $SPENT_OK (a spend in flight when wrk stops is in the ledger but not counted: at most 128 per run); db audit: $AUDIT"
[ "$AUDIT" = passed ] && [ "$LEDGER" -ge "$SPENT_OK" ] && [ "$LEDGER" -le $((SPENT_OK + 128 * 5)) ]

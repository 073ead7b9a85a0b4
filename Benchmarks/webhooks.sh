#!/usr/bin/env bash
# Benchmark: webhook delivery latency, from the commit of the transaction that wrote an event to the receiver
# having it (verified with the standardwebhooks reference library), over N events (default 1000), one per
# transaction, 5 ms apart; beside it pgbench's latency for one trivial transaction on the same PostgreSQL in the
# same run (what a round trip to the database costs here).
#
# Usage: Benchmarks/webhooks.sh [EVENTS]   (DATABASE_URL or the embedded cluster; needs .build/fuzz-venv with
# standardwebhooks and psycopg2-binary, which .ci/run installs)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-1000}"
PY=.build/fuzz-venv/bin/python
"$PY" -c 'import standardwebhooks, psycopg2' 2>/dev/null || { echo "run .ci/run first (standardwebhooks, psycopg2 in .build/fuzz-venv)" >&2; exit 1; }
source Benchmarks/common.sh
scratch_database tally_bench_webhooks
WORK=$(mktemp -d)
SERVER="" RECEIVER=""
cleanup() {
  [ -n "$SERVER" ] && kill -INT "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  [ -n "$RECEIVER" ] && kill "$RECEIVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TALLY" migrate up --no-backup >/dev/null
"$TALLY" users create --email bench@example.com --password bench-password >/dev/null
"$TALLY" credits grant --user bench@example.com --amount 1000 >/dev/null
KEY=$("$TALLY" keys create --service --name bench --scope webhooks:write)
PORT=$(free_port)
(cd "$WORK" && exec "$TALLY" serve --port "$PORT" --metrics-port 0 --log-level error --allow-private-webhooks) >"$WORK/serve.log" 2>&1 &
SERVER=$!
wait_ready "$PORT"
RPORT=$(free_port)
SECRET=$(curl -sf "http://127.0.0.1:$PORT/v1/webhooks" -H "Authorization: Bearer $KEY" -d "{\"url\":\"http://127.0.0.1:$RPORT/hooks\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
"$PY" scripts/webhook-receiver.py --port "$RPORT" --secret "$SECRET" --log "$WORK/received.jsonl" >/dev/null 2>&1 &
RECEIVER=$!
for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $RPORT))" 2>/dev/null && break; sleep 0.1; done

echo "Emitting $EVENTS events, one per transaction, 5 ms apart..."
"$PY" - "$DATABASE_URL" "$EVENTS" "$WORK" <<'PY'
import json, os, sys, time
import psycopg2
url, events, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connection = psycopg2.connect(url)
connection.autocommit = True
cursor = connection.cursor()
committed = {}
for n in range(events):
    cursor.execute("SELECT tally_emit(id, 'balance.depleted', jsonb_build_object('n', %s)) FROM user_credits", (n,))
    committed[cursor.fetchone()[0]] = time.time()
    time.sleep(0.005)
deadline = time.time() + 60
received = {}
while time.time() < deadline and len(received) < events:
    time.sleep(0.2)
    with open(work + "/received.jsonl") as f:
        for line in f:
            record = json.loads(line)
            if record["verified"] == [0]:
                received.setdefault(record["webhook_id"], record["received_at"])
latencies = sorted((received[i] - t) * 1000 for i, t in committed.items() if i in received)
if len(latencies) < events:
    print(f"only {len(latencies)} of {events} events arrived verified within 60 s")
    sys.exit(1)
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"delivered {len(latencies)} of {events}, every one verified by standardwebhooks")
print(f"commit → receiver: p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {latencies[-1]:.1f} ms")
open(work + "/p50", "w").write(f"{pick(0.5):.3f}")
PY
"$PGBENCH" -n -c 1 -T 5 -f <(echo "SELECT 1;") "$DATABASE_URL" 2>/dev/null > "$WORK/pgbench.txt"
PGLAT=$(grep 'latency average' "$WORK/pgbench.txt" | awk '{print $4}')
echo "pgbench, one trivial transaction on one connection: ${PGLAT} ms average"
echo "ratio: webhook p50 / pgbench round trip = $(python3 -c "print(round($(cat "$WORK/p50") / $PGLAT, 1))")"
echo "(the server looks for due deliveries every 100 ms: most of the latency is that wait)"
[ -n "${KEEP:-}" ] || drop_scratch_database

#!/usr/bin/env bash
# Benchmark: adding the seed's foreign key to a 10-million-row user_credits table while writers run.
#
# (a) the longest single write wait seen by concurrent writers (pgbench, UPDATEs of random rows of
#     user_credits) while `tally migrate up` adds the key online (NOT VALID, then VALIDATE), against the
#     same with --strict-sql (a plain ADD CONSTRAINT, which blocks writes for the whole scan);
# (b) the orphan scan (`tally db orphans`) against a plain SELECT count(*) of the same table.
#
# Usage: Benchmarks/online-foreign-key.sh [ROWS]   (default 10000000; DATABASE_URL or the embedded cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-10000000}"
USERS=$(( ROWS / 10 > 0 ? ROWS / 10 : 1 ))
WRITERS="${WRITERS:-4}"

source Benchmarks/common.sh
scratch_database tally_bench_fk
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

echo "Generating $ROWS user_credits rows for $USERS users..."
start=$(date +%s.%N)
"$PSQL" "$URL" -q <<SQL
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE user_credits (id int PRIMARY KEY, user_id int NOT NULL, balance bigint NOT NULL DEFAULT 0);
INSERT INTO users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, $USERS) g;
INSERT INTO user_credits SELECT g, (g % $USERS) + 1, 100 FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE users; VACUUM ANALYZE user_credits;
SQL
printf "generated in %.1fs\n" "$(echo "$(date +%s.%N) - $start" | bc)"

mkdir -p "$WORK/migrations/meta"
cat > "$WORK/migrations/meta/_journal.json" <<JSON
{"version":"7","dialect":"postgresql","entries":[
 {"idx":0,"version":"7","when":1760114263106,"tag":"0000_base","breakpoints":true},
 {"idx":1,"version":"7","when":1762369692832,"tag":"0001_user_fk","breakpoints":true}]}
JSON
echo 'CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, email text NOT NULL);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS user_credits (id int PRIMARY KEY, user_id int NOT NULL, balance bigint NOT NULL DEFAULT 0);' > "$WORK/migrations/0000_base.sql"
echo 'ALTER TABLE "user_credits" ADD CONSTRAINT "user_credits_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;' > "$WORK/migrations/0001_user_fk.sql"
echo 'ALTER TABLE "user_credits" DROP CONSTRAINT "user_credits_user_id_users_id_fk";' > "$WORK/migrations/0001_user_fk.down.sql"
"$TALLY" migrate baseline --dir "$WORK/migrations" --through 0000_base >/dev/null 2>&1

echo "\\set id random(1, $ROWS)
UPDATE user_credits SET balance = balance + 1 WHERE id = :id;" > "$WORK/write.sql"

# Runs writers (pgbench in 2-second rounds, every transaction logged) for the whole migration;
# prints "<longest wait ms> <writes per second> <migration seconds>".
measure() {
  local label=$1; shift
  rm -f "$WORK"/log_* "$WORK/running"; touch "$WORK/running"
  ( i=0; while [ -f "$WORK/running" ]; do i=$((i + 1))
      "$PGBENCH" -n -c "$WRITERS" -j 2 -T 2 -f "$WORK/write.sql" -l --log-prefix="$WORK/log_$i" "$URL" >/dev/null 2>&1 || true
    done ) &
  local writers=$!
  sleep 3
  local t0 t1
  t0=$(date +%s.%N)
  "$TALLY" migrate up --dir "$WORK/migrations" --no-backup --lock-timeout 60 "$@" >"$WORK/$label.out" 2>&1
  t1=$(date +%s.%N)
  sleep 2
  rm -f "$WORK/running"; wait $writers
  local longest count
  longest=$(cat "$WORK"/log_* | awk '{ if ($3 > m) m = $3 } END { printf "%.1f", m / 1000 }')
  count=$(cat "$WORK"/log_* | wc -l)
  echo "$longest $(echo "$count / ($t1 - $t0 + 5)" | bc) $(echo "$t1 - $t0" | bc)"
}

echo "Adding the foreign key online (tally migrate up) with $WRITERS writers..."
read -r online_ms online_tps online_s < <(measure online)
"$TALLY" migrate down --dir "$WORK/migrations" --yes >/dev/null 2>&1
echo "Adding it as written (tally migrate up --strict-sql: plain ADD CONSTRAINT) with $WRITERS writers..."
read -r plain_ms plain_tps plain_s < <(measure plain --strict-sql)

echo "Scanning for orphans against SELECT count(*)..."
scan_s=$("$TALLY" db orphans --fk user_credits.user_id=users.id --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['seconds'])")
count_sql_s=$("$PSQL" "$URL" -qAt -c '\timing on' -c "SELECT count(*) FROM user_credits" | awk '/Time:/ { print $2 / 1000 }')

echo
echo "rows: $ROWS user_credits, $USERS users; writers: $WRITERS pgbench clients updating random rows"
printf "(a) longest write wait while adding the key: online %s ms (migration %.1fs, ~%s writes/s), plain %s ms (migration %.1fs, ~%s writes/s); plain/online = %.1fx\n" \
  "$online_ms" "$online_s" "$online_tps" "$plain_ms" "$plain_s" "$plain_tps" "$(echo "$plain_ms / $online_ms" | bc -l)"
printf "(b) orphan scan (NOT EXISTS anti-join) %.2fs vs SELECT count(*) %.2fs; scan/count = %.2fx\n" \
  "$scan_s" "$count_sql_s" "$(echo "$scan_s / $count_sql_s" | bc -l)"
drop_scratch_database

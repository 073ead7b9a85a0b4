#!/usr/bin/env bash
# Benchmark: `tally migrate up` against psql applying the same files, on the same server, in one run.
#
# The folder is generated in drizzle-kit's shapes, as large as the largest real Drizzle folder seen
# (186 migrations by default): tables with enums, foreign keys in DO $$ … EXCEPTION WHEN duplicate_object
# blocks, ADD COLUMN then a key on it to an existing table (the online path: orphans counted, NOT VALID,
# VALIDATE), indexes, ALTER TYPE … ADD VALUE, a few rows in each table. Then each folder of
# Tests/DrizzleCorpus. For each: seconds for tally and for psql (one psql process, every file with -f),
# the ratio, and whether both schemas are identical (pg_dump --schema-only).
#
# Usage: Benchmarks/migrate-folder.sh [MIGRATIONS]   (default 186; DATABASE_URL or the embedded cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-186}"

source Benchmarks/common.sh
SERVER_URL="${DATABASE_URL:-$("$TALLY" db url)}"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
GENERATED="$WORK/generated"
mkdir -p "$GENERATED/meta"

python3 - "$GENERATED" "$COUNT" <<'PY'
import json, sys
folder, count = sys.argv[1], int(sys.argv[2])
entries, when = [], 1700000000000
for i in range(count):
    tag = f"{i:04d}_step_{i}"
    parts = []
    if i == 0:
        parts.append("CREATE TYPE \"public\".\"status\" AS ENUM('new', 'open');")
        parts.append('CREATE TABLE IF NOT EXISTS "t0" (\n\t"id" serial PRIMARY KEY NOT NULL,\n\t"status" "status" DEFAULT \'new\' NOT NULL\n);')
        parts.append('INSERT INTO "t0" ("status") SELECT \'new\' FROM generate_series(1, 50);')
    else:
        parts.append(f'CREATE TABLE IF NOT EXISTS "t{i}" (\n\t"id" serial PRIMARY KEY NOT NULL,\n\t"parent_id" integer,\n\t"label" text\n);')
        parts.append(f'DO $$ BEGIN\n ALTER TABLE "t{i}" ADD CONSTRAINT "t{i}_parent_id_t{i-1}_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."t{i-1}"("id") ON DELETE cascade ON UPDATE no action;\nEXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;')
        parts.append(f'INSERT INTO "t{i}" ("parent_id", "label") SELECT 1 + g % 50, \'row \' || g FROM generate_series(1, 50) g;')
        if i % 3 == 0:
            parts.append(f'ALTER TABLE "t{i-1}" ADD COLUMN "owner_id" integer;')
            parts.append(f'UPDATE "t{i-1}" SET "owner_id" = 1;')
            parts.append(f'ALTER TABLE "t{i-1}" ADD CONSTRAINT "t{i-1}_owner_id_t0_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."t0"("id") ON DELETE set null ON UPDATE no action;')
        if i % 5 == 0:
            parts.append(f'CREATE INDEX IF NOT EXISTS "t{i}_parent_idx" ON "t{i}" USING btree ("parent_id");')
        if i % 7 == 0:
            parts.append(f'ALTER TYPE "public"."status" ADD VALUE \'s{i}\';')
    open(f"{folder}/{tag}.sql", "w").write("\n--> statement-breakpoint\n".join(parts) + "\n")
    entries.append({"idx": i, "version": "7", "when": when + i * 60000, "tag": tag, "breakpoints": True})
json.dump({"version": "7", "dialect": "postgresql", "entries": entries}, open(f"{folder}/meta/_journal.json", "w"), indent=2)
PY

files_in_order() {
  python3 - "$1" <<'PY'
import json, os, sys
folder = sys.argv[1]
journal = os.path.join(folder, "meta/_journal.json")
if os.path.exists(journal):
    for e in sorted(json.load(open(journal))["entries"], key=lambda e: e["idx"]):
        print(os.path.join(folder, e["tag"] + ".sql"))
else:
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "migration.sql")
        if os.path.exists(path):
            print(path)
PY
}

now() { date +%s.%N; }

printf "%-22s %10s %10s %10s %8s  %s\n" "folder" "migrations" "tally s" "psql s" "ratio" "same schema"
for folder in "$GENERATED" Tests/DrizzleCorpus/*/; do
  folder="${folder%/}"
  name=$(basename "$folder")
  mapfile -t files < <(files_in_order "$folder")
  args=(); for f in "${files[@]}"; do args+=(-f "$f"); done

  export DATABASE_URL="$SERVER_URL"
  scratch_database tally_bench_migrate_tally
  start=$(now)
  "$TALLY" migrate up --dir "$folder" --no-backup >/dev/null 2>"$WORK/tally.err" || { cat "$WORK/tally.err"; exit 1; }
  tally_s=$(echo "$(now) - $start" | bc)
  "$PGBIN/pg_dump" --schema-only --no-owner -N drizzle -N tally_migrate "$URL" | grep -v '^\\\(un\)\?restrict' > "$WORK/tally.sql"
  drop_scratch_database

  export DATABASE_URL="$SERVER_URL"
  scratch_database tally_bench_migrate_psql
  start=$(now)
  "$PSQL" "$URL" -X -q -v ON_ERROR_STOP=1 "${args[@]}" >/dev/null
  psql_s=$(echo "$(now) - $start" | bc)
  "$PGBIN/pg_dump" --schema-only --no-owner -N drizzle -N tally_migrate "$URL" | grep -v '^\\\(un\)\?restrict' > "$WORK/psql.sql"
  drop_scratch_database

  same=$(cmp -s "$WORK/tally.sql" "$WORK/psql.sql" && echo yes || echo NO)
  printf "%-22s %10d %10.2f %10.2f %7.2fx  %s\n" "$name" "${#files[@]}" "$tally_s" "$psql_s" "$(echo "$tally_s / $psql_s" | bc -l)" "$same"
done

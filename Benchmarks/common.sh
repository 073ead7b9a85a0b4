# Shared by the scripts in Benchmarks/ and scripts/ (source it from the repository's root).
# Builds the release `tally`, finds PostgreSQL's programs, and gives each script a scratch database.

# TALLY_BENCH_CONFIG=debug measures the debug build (no release build needed; slower, so a conservative figure).
CONFIG="${TALLY_BENCH_CONFIG:-release}"
swift build -c "$CONFIG" --product tally >/dev/null
TALLY="$PWD/.build/$CONFIG/tally"
PGBIN=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")")
PGBENCH="$PGBIN/pgbench"
PSQL="$PGBIN/psql"

# scratch_database NAME: drops and creates database NAME on DATABASE_URL's server (or the embedded
# cluster's) and exports DATABASE_URL pointing at it, also kept in URL.
scratch_database() {
  SCRATCH_SERVER_URL="${DATABASE_URL:-$("$TALLY" db url)}"
  SCRATCH_NAME="$1"
  URL=$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(u.urlunparse(p._replace(path='/'+sys.argv[2])))" "$SCRATCH_SERVER_URL" "$1")
  "$PSQL" "$SCRATCH_SERVER_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
  export DATABASE_URL="$URL"
}

# drop_scratch_database: drops the database scratch_database made.
drop_scratch_database() {
  "$PSQL" "$SCRATCH_SERVER_URL" -qc "DROP DATABASE IF EXISTS $SCRATCH_NAME WITH (FORCE)"
}

# free_port: a TCP port nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PORT: waits (up to 20 s) for a tally server's /readyz on PORT.
wait_ready() {
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "the server on port $1 did not become ready" >&2
  return 1
}

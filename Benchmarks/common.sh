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

# start_pooler: when TALLY_BENCH_POOLER=pgbouncer, starts PgBouncer in transaction pooling mode (20 server
# connections, what hosted PostgreSQL offers) in front of DATABASE_URL's server and points DATABASE_URL and
# URL through it; DIRECT_URL keeps the direct one. Otherwise DIRECT_URL is URL. stop_pooler stops it.
POOLER_PID=""
start_pooler() {
  DIRECT_URL="$URL"
  [ "${TALLY_BENCH_POOLER:-}" = pgbouncer ] || return 0
  local binary
  binary=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null) || { echo "pgbouncer is not installed (apt-get install pgbouncer)" >&2; return 1; }
  POOLER_DIR=$(mktemp -d)
  local port
  port=$(free_port)
  python3 - "$URL" "$POOLER_DIR" "$port" <<'PY'
import sys, urllib.parse as u
url, directory, port = sys.argv[1], sys.argv[2], sys.argv[3]
p = u.urlparse(url)
q = lambda s: '"' + (s or "").replace('"', '""') + '"'
open(directory + "/users.txt", "w").write(f"{q(u.unquote(p.username or ''))} {q(u.unquote(p.password or ''))}\n")
open(directory + "/pgbouncer.ini", "w").write(f"""[databases]
* = host={p.hostname} port={p.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {directory}/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
server_reset_query =
""")
PY
  chmod 755 "$POOLER_DIR"; chmod 644 "$POOLER_DIR"/*
  if [ "$(id -u)" = 0 ]; then "$binary" -u nobody "$POOLER_DIR/pgbouncer.ini" >"$POOLER_DIR/log" 2>&1 &
  else "$binary" "$POOLER_DIR/pgbouncer.ini" >"$POOLER_DIR/log" 2>&1 & fi
  POOLER_PID=$!
  URL=$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(u.urlunparse(p._replace(netloc=p.netloc.rsplit('@',1)[0]+'@127.0.0.1:'+sys.argv[2])))" "$URL" "$port")
  export DATABASE_URL="$URL"
  for _ in $(seq 1 50); do "$PSQL" "$URL" -qtAc "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "PgBouncer did not come up: $(cat "$POOLER_DIR/log")" >&2
  return 1
}

stop_pooler() {
  if [ -n "$POOLER_PID" ]; then kill -9 "$POOLER_PID" 2>/dev/null; wait "$POOLER_PID" 2>/dev/null || true; fi
  POOLER_PID=""
  [ -n "${POOLER_DIR:-}" ] && rm -rf "$POOLER_DIR"
  return 0
}

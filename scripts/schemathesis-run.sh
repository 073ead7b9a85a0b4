#!/usr/bin/env bash
# Runs schemathesis against a running Tally server: every phase (examples, coverage, fuzzing, stateful) and
# every check, as a session, as a session that logs out, as an API key, and as a service key (with every
# scope) when SERVICE_KEY is set. Exits non-zero on any failure.
#
# Usage: scripts/schemathesis-run.sh BASE_URL SESSION_TOKEN API_KEY [MAX_EXAMPLES]
# The session must be an admin's whose password is not needed; logging out is fuzzed with a session the
# script gets from POST /v1/auth/login when FUZZ_LOGIN='{"email":…,"password":…}' is set, else skipped.
# schemathesis comes from $SCHEMATHESIS, or is installed into .build/fuzz-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=$1 SESSION=$2 KEY=$3 MAX=${4:-100}
ST=${SCHEMATHESIS:-.build/fuzz-venv/bin/schemathesis}
if [ ! -x "$ST" ]; then
  python3 -m venv .build/fuzz-venv
  .build/fuzz-venv/bin/pip install -q schemathesis
  ST=.build/fuzz-venv/bin/schemathesis
fi

status=0
# fuzz NAME TOKEN CONFIG [OPTIONS…]
fuzz() {
  local name=$1 token=$2 config=$3; shift 3
  echo "== schemathesis as $name"
  "$ST" --no-color --config-file "$config" run "$BASE/openapi.json" --url "$BASE" \
    -H "Authorization: Bearer $token" --max-examples "$MAX" \
    --phases examples,coverage,fuzzing,stateful --checks all \
    --suppress-health-check too_slow,filter_too_much "$@" || status=1
}
# Logging out, ending sessions and changing the password (whose wrong guesses count as failed logins) end or
# slow the session the rest of the run uses: they get a session of their own, alone, after the rest.
ENDING=(/v1/auth/logout /v1/auth/logout-others /v1/auth/password /v1/sessions/{session})
fuzz "a session" "$SESSION" scripts/schemathesis.toml $(printf -- '--exclude-path %s ' "${ENDING[@]}")
if [ -n "${FUZZ_LOGIN:-}" ]; then
  LOGOUT=$(curl -sf "$BASE/v1/auth/login" -d "$FUZZ_LOGIN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  fuzz "a session logging out" "$LOGOUT" scripts/schemathesis.toml $(printf -- '--include-path %s ' "${ENDING[@]}")
fi
# With an API key, ?team_id= is refused with a 400 by design (a key reads only the account it spends from);
# the document, shared by both credentials, allows team_id for sessions.
KEY_CONFIG=$(mktemp)
trap 'rm -f "$KEY_CONFIG"' EXIT
cat scripts/schemathesis.toml - > "$KEY_CONFIG" <<'TOML'

[[operations]]
include-path = ["/v1/credits/balance", "/v1/credits/transactions", "/v1/credits/burndown"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]
TOML
fuzz "an API key" "$KEY" "$KEY_CONFIG"
if [ -n "${SERVICE_KEY:-}" ]; then
  fuzz "a service key" "$SERVICE_KEY" scripts/schemathesis.toml
fi
exit $status

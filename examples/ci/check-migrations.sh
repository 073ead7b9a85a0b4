#!/usr/bin/env bash
# The migration checks for a pull request, as examples/ci/migrations.yml runs them (and TallyCLITests too):
#   1. the folder and its history agree (`tally migrate validate`);
#   2. the migrations the pull request adds are planned in a scratch database that holds what the base branch
#      has applied, with each finding annotated on its file and line (`tally migrate plan --format github`).
# Usage: check-migrations.sh DIR [APPLIED_TAG]   (DATABASE_URL: a server where the scratch database may be
# created; APPLIED_TAG: the last migration the base branch has, or none to plan them all)
# Exit status: non-zero when validate fails or the plan finds an error (or more warnings than
# TALLY_MAX_WARNINGS, when set).
set -euo pipefail
dir="$1"
applied="${2:-}"
tally="${TALLY:-tally}"

"$tally" migrate validate --dir "$dir"
args=(migrate plan --dir "$dir" --scratch --format github)
[ -n "$applied" ] && args+=(--applied-through "$applied")
[ -n "${TALLY_MAX_WARNINGS:-}" ] && args+=(--max-warnings "$TALLY_MAX_WARNINGS")
"$tally" "${args[@]}"

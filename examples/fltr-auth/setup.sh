#!/usr/bin/env bash
# Builds the seed's broken production database in $DATABASE_URL (an empty database):
# 0000 and 0001 applied by hand with no history, then broken-production.sql.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${DATABASE_URL:?set DATABASE_URL to an empty database, e.g. DATABASE_URL=\$(tally db url | sed 's#/tally?#/fltr_auth?#')}"
for file in "$here/migrations/0000_bumpy_thor.sql" "$here/migrations/0001_quiet_storm.sql" "$here/broken-production.sql"; do
  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -q -f "$file"
done
echo "fltr_auth is now in the seed's production state."

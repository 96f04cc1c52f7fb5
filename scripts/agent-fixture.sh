#!/usr/bin/env bash
# A bot package written outside this repository (Tests/Fixtures/HelloBot, the README's "Write a bot")
# builds against the library products. It is built as its own package, in a scratch folder that
# starts as a copy of this package's build, so that the libraries already compiled are reused and
# only the fixture is compiled and linked.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fixture="$root/Tests/Fixtures/HelloBot"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-fixture.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
if [ -d "$root/.build" ]; then
    # Hard links: no copy of the bytes; SwiftPM replaces files rather than writing into them.
    cp -al "$root/.build/." "$scratch/" 2>/dev/null || cp -a "$root/.build/." "$scratch/"
fi
[ -e "$root/Package.resolved" ] && cp "$root/Package.resolved" "$fixture/Package.resolved"
trap 'rm -rf "$scratch" "$fixture/Package.resolved"' EXIT
swift build --package-path "$fixture" --scratch-path "$scratch" --product HelloBot 2>&1 | tail -n 20
test -x "$scratch/debug/HelloBot"
# The built bot reads its configuration and reports a missing token, naming the variable.
if output=$(env -u HELLO_TOKEN "$scratch/debug/HelloBot" "$fixture/agent.yml" 2>&1); then
    echo "HelloBot started without a token"; exit 1
fi
echo "$output" | grep -q "HELLO_TOKEN" || { echo "unexpected output: $output"; exit 1; }
echo "the fixture bot builds and checks its configuration"

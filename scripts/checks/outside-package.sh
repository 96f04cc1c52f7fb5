#!/usr/bin/env bash
# A bot package written outside this repository builds against the library products:
# Tests/Fixtures/HelloBot, the README's "Write a bot", depends on this package by path as a
# plugin author's package depends on it by URL. Fails when it does not build.
#
# It builds in this package's own build folder (.build), after `swift build`: the fixture's
# dependencies are this package's, compiled with the same commands, so SwiftPM reuses them and
# compiles only the fixture (and, the first time, Hummingbird again: about 90 s on 2 cores; a
# folder of its own would compile all ~900 files of the dependencies again, about 10 minutes,
# and a copy of .build does not help, since the compiled modules remember their paths).
# The next `swift build` of this package only links again.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
fixture="$root/Tests/Fixtures/HelloBot"
# The same versions of the dependencies as this package (Package.resolved is not committed).
if [ -e "$root/Package.resolved" ]; then
    cp "$root/Package.resolved" "$fixture/Package.resolved"
    trap 'rm -f "$fixture/Package.resolved"' EXIT
fi
# The README shows the fixture's code: the same text, so that what a reader copies is what builds.
readme_code=$(awk '/^## Write a bot/ {section=1; next} /^## / {section=0} section && /^```swift/ {code=1; next} code && /^```/ {exit} code' README.md)
if [ "$readme_code" != "$(cat "$fixture/Sources/HelloBot/main.swift")" ]; then
    diff <(echo "$readme_code") "$fixture/Sources/HelloBot/main.swift" || true
    echo "FAILED: the README's \"Write a bot\" code differs from Tests/Fixtures/HelloBot/Sources/HelloBot/main.swift (above: README <, fixture >)"
    exit 1
fi
start=$SECONDS
if ! swift build --package-path "$fixture" --scratch-path "$root/.build" --product HelloBot > "$root/.build/outside-package.log" 2>&1; then
    grep -E "error|warning: unre" "$root/.build/outside-package.log" | head -n 40 || tail -n 40 "$root/.build/outside-package.log"
    echo "FAILED: Tests/Fixtures/HelloBot (the README's \"Write a bot\") does not build; the log: .build/outside-package.log"
    exit 1
fi
echo "the fixture built in $((SECONDS - start)) s"
bot="$root/.build/debug/HelloBot"
test -x "$bot" || { echo "FAILED: no $bot after the build"; exit 1; }
# The built bot reads its configuration and reports a missing token, naming the variable.
if output=$(env -u HELLO_TOKEN "$bot" "$fixture/agent.yml" 2>&1); then
    echo "FAILED: HelloBot started without a token"; exit 1
fi
echo "$output" | grep -q "HELLO_TOKEN" || { echo "FAILED: HelloBot's answer to a missing token does not name HELLO_TOKEN: $output"; exit 1; }
echo "ok: a bot package outside the repository builds and checks its configuration"

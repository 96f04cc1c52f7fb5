#!/usr/bin/env bash
# A bot package written outside this repository builds against the library products and its test
# passes: Tests/Fixtures/HelloBot, the README's "Write a bot", which depends on this package by path
# as a plugin author's package depends on it by URL. Fails when it does not build, when its test
# fails, or when the README's code differs from it.
#
# It builds in this package's own build folder (.build), after `swift build --build-tests`: the
# fixture's dependencies are this package's, compiled with the same commands, so SwiftPM reuses
# them and compiles the fixture (and, the first time, Hummingbird again): about 1.5 minutes on 2
# cores. A folder of its own would compile all ~900 files of the dependencies again (10 minutes),
# and a copy of .build does not help: the compiled modules remember their paths.
# The next `swift build` of this package only links again.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
fixture="$root/Tests/Fixtures/HelloBot"

# The README shows the fixture's files: the same text (but for the dependency, by URL there), so
# that what a reader copies is what builds here.
python3 - "$fixture" <<'PYTHON'
import re, sys
fixture = sys.argv[1]
section = open("README.md").read().split("\n## Write a bot\n", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```(?:swift|yaml)\n(.*?)```", section, re.S)
package = open(f"{fixture}/Package.swift").read()
package = re.sub(r"^// A bot written outside.*\n", "", package, flags=re.M)
package = package.replace('.package(name: "switchboard", path: "../../.."),', '.package(url: "https://github.com/OWNER/switchboard.git", branch: "main"),')
expected = {
    "Package.swift": package,
    "Sources/HelloBot/main.swift": open(f"{fixture}/Sources/HelloBot/main.swift").read(),
    "agent.yml": open(f"{fixture}/agent.yml").read(),
    "Tests/HelloBotTests/HelloTests.swift": open(f"{fixture}/Tests/HelloBotTests/HelloTests.swift").read(),
}
if len(blocks) != len(expected):
    sys.exit(f'FAILED: the README\'s "Write a bot" has {len(blocks)} code blocks, expected {len(expected)} ({", ".join(expected)})')
for block, (name, text) in zip(blocks, expected.items()):
    if block != text:
        import difflib
        print("".join(difflib.unified_diff(block.splitlines(True), text.splitlines(True), "README.md", f"Tests/Fixtures/HelloBot/{name}")))
        sys.exit(f'FAILED: the README\'s "Write a bot" shows another {name} than Tests/Fixtures/HelloBot (above)')
PYTHON

# The same versions of the dependencies as this package (Package.resolved is not committed).
if [ -e "$root/Package.resolved" ]; then
    cp "$root/Package.resolved" "$fixture/Package.resolved"
    trap 'rm -f "$fixture/Package.resolved"' EXIT
fi
log="$root/.build/outside-package.log"
start=$SECONDS
if ! swift build --package-path "$fixture" --scratch-path "$root/.build" --build-tests > "$log" 2>&1; then
    grep -E "error" "$log" | head -n 40 || tail -n 40 "$log"
    echo "FAILED: Tests/Fixtures/HelloBot (the README's \"Write a bot\") does not build; the log: .build/outside-package.log"
    exit 1
fi
echo "the fixture built in $((SECONDS - start)) s"
if ! swift test --package-path "$fixture" --scratch-path "$root/.build" --skip-build >> "$log" 2>&1; then
    grep -E "✘|error" "$log" | head -n 40 || tail -n 40 "$log"
    echo "FAILED: the test of Tests/Fixtures/HelloBot; the log: .build/outside-package.log"
    exit 1
fi
# The built bot reads its configuration and reports a missing token, naming the variable.
if output=$(env -u HELLO_TOKEN "$root/.build/debug/HelloBot" "$fixture/agent.yml" 2>&1); then
    echo "FAILED: HelloBot started without a token"; exit 1
fi
echo "$output" | grep -q "HELLO_TOKEN" || { echo "FAILED: HelloBot's answer to a missing token does not name HELLO_TOKEN: $output"; exit 1; }
echo "ok: a bot package outside the repository builds, passes its test and checks its configuration ($((SECONDS - start)) s)"

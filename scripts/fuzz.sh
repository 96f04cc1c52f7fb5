#!/usr/bin/env bash
# Fuzzes what the server decodes from clients (envelopes, the fast message scanner, HTTP bodies)
# with libFuzzer, for as many seconds as asked (default 60):
#   scripts/fuzz.sh 3600
# It starts from Tests/Fuzz/corpus, which the normal test run replays (FuzzCorpusTests); new
# inputs go to .build-fuzz/new-corpus, and with FUZZ_MERGE=1 the ones that reach new code are
# added, minimized, to Tests/Fuzz/corpus. A crash leaves its input in .build-fuzz/crash-*, and
# libFuzzer's final statistics (executions, new units) end the output.
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/.build-fuzz"
mkdir -p "$out/protocol"
cd "$out"

# The protocol module, then the target with the server's decoders, all instrumented.
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name SwitchboardProtocol -emit-module \
    -emit-module-path "$out/protocol/SwitchboardProtocol.swiftmodule" -emit-library -static \
    -o "$out/protocol/libSwitchboardProtocol.a" "$root"/Sources/SwitchboardProtocol/*.swift
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name SwitchboardFuzz -I "$out/protocol" \
    "$root/Sources/SwitchboardServer/Codec/InputFuzzing.swift" "$root/Sources/SwitchboardServer/Codec/MessageFrameScanner.swift" \
    "$root/Tests/Fuzz/FuzzTarget.swift" "$out/protocol/libSwitchboardProtocol.a" -o "$out/fuzz"

mkdir -p "$out/new-corpus"
"$out/fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -artifact_prefix="$out/" \
    -print_final_stats=1 "$out/new-corpus" "$root/Tests/Fuzz/corpus"
if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$out/fuzz" -merge=1 "$root/Tests/Fuzz/corpus" "$out/new-corpus" 2>&1 | tail -n 2
fi

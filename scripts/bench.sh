#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md in one command: builds the release binaries, then runs
#
#   side by side, alternating Switchboard, the Node `ws` peer and InspIRCd, --rounds times (3):
#     cpu       CPU per delivery: 1,000 clients in 10 rooms, 40 senders, 200 messages/s
#               (20,000 deliveries/s), with p99 and lost/doubled (InspIRCd through its own driver)
#     memory    memory per idle connection at 10,000 connections (Switchboard and Node)
#   Switchboard only, on each of --databases (sqlite,postgres):
#     ceiling   fan-out at 250,000 deliveries/s, open loop (1,000 clients, 100 senders, 2,500 messages/s)
#     writes    durable writes (--synchronous full), 200 senders, each in a room of its own; then the
#               same against the Node peer (storing nothing), as this machine's ceiling
#     replay    a rejoin that replays 1,000 missed messages (20 rejoins)
#     history   a database of 1 M messages (10 rooms x 100,000): start to /healthz, GET /api/rooms,
#               a history page, a replay of 1,000 (Benchmarks/history.py)
#
# It is a benchmark, not a test: it never fails on figures. Each run leaves its report (JSON) and
# log in the output folder, and the end prints one table of every figure (Benchmarks/bench-summary.py).
#
# usage: scripts/bench.sh [options]
#   --quick              everything scaled down, one round: checks the whole set in about three minutes
#   --only LIST          scenarios, comma-separated, of: cpu,memory,ceiling,writes,replay,history
#   --rounds N           alternations of the side-by-side set (default 3)
#   --databases LIST     sqlite,postgres (default both)
#   --duration S         seconds measured by each messaging run (default 20; --quick 3)
#   --peers DIR          the peers (node-ws/, irc/); default ../shared/peers next to the checkout,
#                        or $SWITCHBOARD_PEERS. A peer that is missing is skipped with a note.
#   --out DIR            where the reports go (default .build/bench/DATE)
#   --no-build           use the binaries already built
#   --binaries DIR       where switchboard and switchboard-bench are (default .build/release)
#   --server-binary FILE the switchboard to measure (default: DIR/switchboard), e.g. an older build
# Environment: SWIFT (the swift command, e.g. SWIFT=wswift), NODE (node).
#
# Needs: python3, node and Debian's node-ws (installed when missing), inspircd (likewise), the
# PostgreSQL binaries (/usr/lib/postgresql/*/bin, or Debian's postgresql, installed when missing).
# PostgreSQL runs in a throwaway cluster with fsync ON, so its writes are as durable as SQLite's.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
arguments="$*"

quick=0; only="cpu,memory,ceiling,writes,replay,history"; rounds=""; databases="sqlite,postgres"; duration=""
peers=${SWITCHBOARD_PEERS:-$root/../shared/peers}; out=""; build=1; server=""; binaries=$root/.build/release
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --only) only=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --databases) databases=$2; shift ;;
        --duration) duration=$2; shift ;;
        --peers) peers=$2; shift ;;
        --out) out=$2; shift ;;
        --no-build) build=0 ;;
        --binaries) binaries=$2; shift ;;
        --server-binary) server=$2; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
SWIFT=${SWIFT:-swift}; NODE=${NODE:-node}
wants() { [[ ",$only," == *",$1,"* ]]; }
note() { printf '== %s\n' "$*" >&2; }

# Sizes: the issue's, or small enough to check the whole set quickly.
if [ "$quick" = 1 ]; then
    rounds=${rounds:-1}; duration=${duration:-3}; warmup=1
    cpu_load=(--clients 200 --rooms 10 --senders 20 --rate 50)     # 1,000 deliveries/s
    irc_load=(200 10 20 50)
    connections=500
    ceiling_load=(--clients 200 --rooms 10 --senders 20 --rate 500)
    writers=20; replay_load=(--replay 100 --iterations 5); history_size=(--rooms 10 --messages 1000)
else
    rounds=${rounds:-3}; duration=${duration:-20}; warmup=5
    cpu_load=(--clients 1000 --rooms 10 --senders 40 --rate 200)    # 20,000 deliveries/s
    irc_load=(1000 10 40 200)
    connections=10000
    ceiling_load=(--clients 1000 --rooms 10 --senders 100 --rate 2500) # 250,000 deliveries/s
    writers=200; replay_load=(--replay 1000 --iterations 20); history_size=(--rooms 10 --messages 100000)
fi
out=${out:-$root/.build/bench/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"

# 10,000 connections need as many descriptors, in the generator and in every server it starts.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((connections + 1000)) ]; then
    note "ulimit -n is $(ulimit -n): too few for $connections connections; raise the hard limit (e.g. in /etc/security/limits.conf)"
fi

# --- Build --------------------------------------------------------------------------------------
if [ "$build" = 1 ]; then
    note "building release binaries (the first release build takes 15-30 minutes on 2 cores)"
    $SWIFT build -c release --product switchboard >"$out/build.log" 2>&1 &&
        $SWIFT build -c release --product switchboard-bench >>"$out/build.log" 2>&1 ||
        { echo "bench.sh: the release build failed; see $out/build.log" >&2; tail -20 "$out/build.log" >&2; exit 1; }
fi
binaries=$(cd "$binaries" 2>/dev/null && pwd || echo "$binaries")
server=${server:-$binaries/switchboard}
bench=$binaries/switchboard-bench
for binary in "$server" "$bench"; do
    [ -x "$binary" ] || { echo "bench.sh: no $binary; build it (drop --no-build)" >&2; exit 1; }
done

# --- Services -----------------------------------------------------------------------------------
cleanups=()
cleanup() { for ((i=${#cleanups[@]}-1; i>=0; i--)); do eval "${cleanups[i]}" || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

install_debian() {
    note "installing $* (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq "$@"; } >"$out/apt.log" 2>&1 || note "could not install $*; see $out/apt.log"
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for_port() {
    local i
    for ((i = 0; i < 200; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    return 1
}

node_ok=0
if wants cpu || wants memory || wants writes; then
    if [ -f "$peers/node-ws/server.js" ]; then
        command -v "$NODE" >/dev/null && [ -d /usr/share/nodejs/ws ] || install_debian nodejs node-ws
        command -v "$NODE" >/dev/null && [ -d /usr/share/nodejs/ws ] && node_ok=1
    else
        note "no Node peer at $peers/node-ws (give --peers DIR): the side-by-side runs leave it out"
    fi
fi
irc_ok=0
if wants cpu; then
    if [ -f "$peers/irc/inspircd.conf" ]; then
        command -v inspircd >/dev/null || install_debian inspircd
        command -v inspircd >/dev/null && irc_ok=1
    else
        note "no InspIRCd configuration at $peers/irc (give --peers DIR): the side-by-side runs leave it out"
    fi
fi

pg_url=""
pg_start() {
    local bin dir port
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -1)
    if [ -z "$bin" ]; then install_debian postgresql; bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -1); fi
    [ -n "$bin" ] || { note "no PostgreSQL: its runs are left out"; return 1; }
    dir=$(mktemp -d /tmp/switchboard-bench-postgres.XXXXXX); port=$(free_port)
    local run=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
        chown postgres "$dir"; run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
    # fsync and synchronous_commit stay on (the defaults): a durable commit, as SQLite's `full`.
    "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB" start >/dev/null ||
        { cat "$dir/log" >&2; return 1; }
    cleanups+=("${run[*]} $bin/pg_ctl -D $dir/data -m immediate stop >/dev/null 2>&1; rm -rf $dir")
    pg_psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt -d postgres)
    pg_url="postgres://postgres@127.0.0.1:$port"
    note "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, fsync on ($dir)"
}
# A fresh, empty database for each run (called in a subshell: the name cannot come from a counter).
pg_new_database() {
    local name="bench_$(date +%s%N)"
    "${pg_psql[@]}" -c "CREATE DATABASE $name" >/dev/null && echo "$pg_url/$name"
}
if [[ ",$databases," == *",postgres,"* ]] && { wants ceiling || wants writes || wants replay || wants history; }; then
    pg_start || databases=${databases//postgres/}
fi

# --- Runs ---------------------------------------------------------------------------------------
# Each run: `NAME.json` (the report) and `NAME.log` (progress and the server's notes). A run that
# fails is noted and the set goes on.
run_bench() {
    local name=$1; shift
    note "$name ($(uptime | sed 's/.*load average: /load /'))"
    if ! "$bench" "$@" --json >"$out/$name.json" 2>"$out/$name.log"; then
        note "$name did not finish; see $out/$name.log"; tail -3 "$out/$name.log" >&2
    fi
}
switchboard_at() { # database → generator options that start Switchboard on it
    case "$1" in
        sqlite) echo --start-server --server-binary "$server" --server-arg=--synchronous --server-arg=full ;;
        postgres) local url; url=$(pg_new_database) && echo --start-server --server-binary "$server" --database "$url" ;;
    esac
}
node_command="$NODE $peers/node-ws/server.js {port}"
export NODE_PATH=/usr/share/nodejs

inspircd_fanout() {
    local name=$1 dir port pid
    note "$name ($(uptime | sed 's/.*load average: /load /'))"
    dir=$(mktemp -d /tmp/switchboard-bench-inspircd.XXXXXX); chmod 777 "$dir"; port=$(free_port)
    sed -e "s#/tmp/insp#$dir#g" -e "s#port=\"[0-9]*\"#port=\"$port\"#" "$peers/irc/inspircd.conf" >"$dir/inspircd.conf"
    inspircd --config "$dir/inspircd.conf" --nofork --runasroot >"$dir/stdout.log" 2>&1 &
    pid=$!
    if wait_for_port "$port"; then
        python3 "$peers/irc/ircfanout.py" "$port" "$pid" "${irc_load[@]}" "$duration" >"$out/$name.txt" 2>"$out/$name.log" ||
            note "$name did not finish; see $out/$name.log"
    else
        note "InspIRCd did not start; see $dir/stdout.log"; cp "$dir/stdout.log" "$out/$name.log"
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"
}

{
    echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command scripts/bench.sh $arguments"
} >"$out/run.txt"

messaging=(--duration "$duration" --warmup "$warmup")
for ((round = 1; round <= rounds; round++)); do
    if wants cpu; then
        run_bench "r$round-cpu-switchboard" fanout $(switchboard_at sqlite) "${cpu_load[@]}" "${messaging[@]}"
        [ "$node_ok" = 1 ] && run_bench "r$round-cpu-node" fanout --server-command "$node_command" "${cpu_load[@]}" "${messaging[@]}"
        [ "$irc_ok" = 1 ] && inspircd_fanout "r$round-cpu-inspircd"
    fi
    if wants memory; then
        run_bench "r$round-memory-switchboard" connections $(switchboard_at sqlite) --connections "$connections"
        [ "$node_ok" = 1 ] && run_bench "r$round-memory-node" connections --server-command "$node_command" --connections "$connections"
    fi
done
for database in ${databases//,/ }; do
    wants ceiling && run_bench "ceiling-$database" fanout $(switchboard_at "$database") "${ceiling_load[@]}" "${messaging[@]}"
    wants writes && run_bench "writes-$database" writes $(switchboard_at "$database") --senders "$writers" "${messaging[@]}"
    wants replay && run_bench "replay-$database" recovery $(switchboard_at "$database") "${replay_load[@]}" --clients 0
    if wants history; then
        note "history-$database ($(uptime | sed 's/.*load average: /load /'))"
        target=$out/history.db; [ "$database" = postgres ] && target=$(pg_new_database)
        python3 "$root/Benchmarks/history.py" --server-binary "$server" --database "$target" --workdir "$out" "${history_size[@]}" \
            >"$out/history-$database.json" 2>"$out/history-$database.log" || note "history-$database did not finish; see $out/history-$database.log"
        rm -f "$out"/history.db*
    fi
done

# The same writes against the Node peer, which stores nothing: what this machine and this generator
# allow at all, the ceiling any durable store is measured under.
wants writes && [ "$node_ok" = 1 ] && run_bench "writes-node" writes --server-command "$node_command" --senders "$writers" "${messaging[@]}"

python3 "$root/Benchmarks/bench-summary.py" "$out" | tee "$out/summary.md"
note "reports in $out"

# Starts a throwaway PostgreSQL for the tests; sourced by scripts/test.sh (or by hand:
# `source scripts/services/postgres.sh`, then `stop_postgres` when done).
#
# Uses the machine's PostgreSQL (/usr/lib/postgresql/*/bin) when present, otherwise installs
# Debian's `postgresql`. PostgreSQL refuses to run as root, so as root the cluster runs as the
# `postgres` user. It lives in a temporary folder, listens on a free loopback port only, trusts
# local connections (nothing but this machine can reach it) and skips fsync (a test cluster is
# thrown away; durability is measured in BENCHMARKS.md, on a cluster of its own).
#
# Exports SWITCHBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres, and appends
# its stop to the bash array `cleanups`. SWITCHBOARD_POSTGRES_PORT picks the port (default: a free one).

postgres_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    return 1
}

if ! PG_BIN=$(postgres_bin); then
    echo "PostgreSQL is not installed; installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
    PG_BIN=$(postgres_bin) || { echo "postgres.sh: no initdb after installing postgresql" >&2; return 1; }
fi

PG_DIR=$(mktemp -d /tmp/switchboard-postgres.XXXXXX)
PG_RUN=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    chown postgres "$PG_DIR"
    PG_RUN=(runuser -u postgres --)
fi

PG_PORT=${SWITCHBOARD_POSTGRES_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
"${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
# Many test servers run side by side, each with a small pool: allow enough connections.
"${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c full_page_writes=off" \
    start >/dev/null || { cat "$PG_DIR/log" >&2; return 1; }

export SWITCHBOARD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
stop_postgres() {
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$PG_DIR"
}
cleanups+=("stop_postgres")
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PG_DIR)"

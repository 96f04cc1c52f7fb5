# Starts a throwaway PostgreSQL for the tests; sourced by scripts/test.sh (or by hand:
# `source scripts/services/postgres.sh`, then `stop_postgres` when done).
#
# Uses the machine's PostgreSQL (/usr/lib/postgresql/*/bin) when present, otherwise installs
# Debian's `postgresql`. PostgreSQL refuses to run as root, so as root the cluster runs as the
# `postgres` user. It lives in a temporary folder, listens on a free loopback port only, trusts
# local connections (nothing but this machine can reach it) and skips fsync (a test cluster is
# thrown away; durability is measured in BENCHMARKS.md, on a cluster of its own).
#
# Exports SWITCHBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres (and, for a
# second strict cluster, SWITCHBOARD_TEST_POSTGRES_PASSWORD_URL, _TLS_URL and _CA), and appends
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

# A second, small cluster that is strict, for the tests of refused connections: role sb_password
# must give its password (scram-sha-256), role sb_tls must use TLS (a throwaway self-signed
# certificate for 127.0.0.1, which the tests trust through sslrootcert).
if ! command -v openssl >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq openssl >/dev/null
fi
PG_SECURE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_DIR/secure" -A trust -U postgres --no-sync >>"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$PG_DIR/secure/server.key" -out "$PG_DIR/secure/server.crt" >/dev/null 2>&1 \
    || { echo "postgres.sh: openssl could not make a certificate" >&2; return 1; }
cp "$PG_DIR/secure/server.crt" "$PG_DIR/ca.crt"
chmod 600 "$PG_DIR/secure/server.key"
[ ${#PG_RUN[@]} -eq 0 ] || chown postgres "$PG_DIR/secure/server.key" "$PG_DIR/secure/server.crt"
{
    echo "host all sb_password 127.0.0.1/32 scram-sha-256"
    echo "hostssl all sb_tls 127.0.0.1/32 trust"
    echo "hostnossl all sb_tls 127.0.0.1/32 reject"
    cat "$PG_DIR/secure/pg_hba.conf"
} >"$PG_DIR/hba" && cat "$PG_DIR/hba" >"$PG_DIR/secure/pg_hba.conf"
"${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/secure" -l "$PG_DIR/secure.log" -w -t 60 \
    -o "-p $PG_SECURE_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=20 -c fsync=off -c ssl=on" \
    start >/dev/null || { cat "$PG_DIR/secure.log" >&2; return 1; }
"${PG_RUN[@]}" "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_SECURE_PORT" -U postgres -qAt \
    -c "CREATE ROLE sb_password LOGIN PASSWORD 'sb-secret'" -c "CREATE ROLE sb_tls LOGIN" \
    -c "GRANT CREATE ON DATABASE postgres TO sb_password, sb_tls" >/dev/null \
    || { echo "postgres.sh: could not create the roles of the strict cluster" >&2; return 1; }
export SWITCHBOARD_TEST_POSTGRES_PASSWORD_URL="postgres://sb_password:sb-secret@127.0.0.1:$PG_SECURE_PORT/postgres"
export SWITCHBOARD_TEST_POSTGRES_TLS_URL="postgres://sb_tls@127.0.0.1:$PG_SECURE_PORT/postgres"
export SWITCHBOARD_TEST_POSTGRES_CA="$PG_DIR/ca.crt"

stop_postgres() {
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/secure" -m immediate stop >/dev/null 2>&1
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$PG_DIR"
}
cleanups+=("stop_postgres")
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT, strict on :$PG_SECURE_PORT ($PG_DIR)"

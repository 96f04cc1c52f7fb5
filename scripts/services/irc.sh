# Sourced by scripts/test.sh: two real IRC servers for the IRC bridge's tests.
#
# - ngircd, which offers no IRCv3 beyond multi-prefix: the plain path;
# - InspIRCd with its IRCv3 modules (message-tags, server-time, echo-message, batch, …), on a
#   plain port and on a TLS port whose certificate (for "localhost" and 127.0.0.1) comes from a
#   throwaway test CA made here with openssl.
#
# Exports SWITCHBOARD_TEST_IRC_NGIRCD_PORT, SWITCHBOARD_TEST_IRC_INSPIRCD_PORT,
# SWITCHBOARD_TEST_IRC_TLS_PORT, SWITCHBOARD_TEST_IRC_CA (the CA certificate, PEM) and
# SWITCHBOARD_TEST_IRC_NGIRCD and SWITCHBOARD_TEST_IRC_INSPIRCD (the binaries, for tests that start
# and restart a server of their own).
# Set SWITCHBOARD_IRC_PORT_BASE to pick the ports (three in a row) instead of free random ones.

if ! command -v ngircd >/dev/null || ! command -v inspircd >/dev/null || ! command -v openssl >/dev/null; then
    echo "installing ngircd, inspircd and openssl (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngircd inspircd openssl >/dev/null
fi

irc_port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
irc_free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 30000))
        irc_port_is_free "$port" && irc_port_is_free "$((port + 1))" && irc_port_is_free "$((port + 2))" && break
    done
    echo "$port"
}
irc_wait_for_port() {
    local tries=0
    until ! irc_port_is_free "$1"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then echo "the IRC server on port $1 did not start; its log: $2" >&2; cat "$2" >&2; return 1; fi
        sleep 0.1
    done
}

irc_dir=$(mktemp -d)
chmod 755 "$irc_dir"
irc_base=${SWITCHBOARD_IRC_PORT_BASE:-$(irc_free_port)}
irc_ngircd_port=$irc_base
irc_inspircd_port=$((irc_base + 1))
irc_tls_port=$((irc_base + 2))

# A test CA and a server certificate for localhost and 127.0.0.1, valid for a day.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=Switchboard test CA" \
    -keyout "$irc_dir/ca.key" -out "$irc_dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$irc_dir/server.key" -out "$irc_dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$irc_dir/san.ext"
openssl x509 -req -in "$irc_dir/server.csr" -CA "$irc_dir/ca.pem" -CAkey "$irc_dir/ca.key" -CAcreateserial \
    -days 1 -extfile "$irc_dir/san.ext" -out "$irc_dir/server.pem" 2>/dev/null
chmod 644 "$irc_dir"/*.pem "$irc_dir"/*.key

cat >"$irc_dir/ngircd.conf" <<CONF
[Global]
Name = ngircd.test.local
Info = Switchboard test server
Listen = 127.0.0.1
Ports = $irc_ngircd_port
PidFile = $irc_dir/ngircd.pid
ServerUID = nobody
ServerGID = nogroup
MotdPhrase = test
[Limits]
MaxNickLength = 30
[Options]
PAM = no
Ident = no
DNS = no
CONF
ngircd -n -f "$irc_dir/ngircd.conf" >"$irc_dir/ngircd.log" 2>&1 &
irc_ngircd_pid=$!
cleanups+=("kill $irc_ngircd_pid 2>/dev/null; wait $irc_ngircd_pid 2>/dev/null")

mkdir -p "$irc_dir/inspircd"
cat >"$irc_dir/inspircd.conf" <<CONF
<server name="inspircd.test.local" description="Switchboard test server" network="Test">
<admin name="t" nick="t" email="t@t.t">
<bind address="127.0.0.1" port="$irc_inspircd_port" type="clients">
<bind address="127.0.0.1" port="$irc_tls_port" type="clients" sslprofile="tls">
<module name="ssl_gnutls">
<sslprofile name="tls" provider="gnutls" certfile="$irc_dir/server.pem" keyfile="$irc_dir/server.key" dhfile="" requestclientcert="no">
<connect allow="127.0.0.1" maxlocal="100000" maxglobal="100000" localmax="100000" globalmax="100000" limit="100000" threshold="1000000" commandrate="100000000" sendq="10000000" recvq="10000000" pingfreq="120" timeout="60" fakelag="no" useident="no" resolvehostnames="no" hardsendq="10000000" softsendq="10000000">
<pid file="$irc_dir/inspircd/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="$irc_dir/inspircd/ircd.log">
<options maxtargets="20">
<performance softlimit="100000" clonesonconnect="no" quietbursts="yes">
<security runasuser="nobody" runasgroup="nogroup">
<limits maxchan="64" maxnick="30">
<channels users="100" opers="100">
<module name="cap">
<module name="ircv3">
<module name="ircv3_capnotify">
<module name="ircv3_ctctags">
<module name="ircv3_echomessage">
<module name="ircv3_servertime">
<module name="ircv3_msgid">
<module name="ircv3_batch">
<module name="ircv3_labeledresponse">
<module name="namesx">
CONF
inspircd --config "$irc_dir/inspircd.conf" --nofork --runasroot >"$irc_dir/inspircd.log" 2>&1 &
irc_inspircd_pid=$!
cleanups+=("kill $irc_inspircd_pid 2>/dev/null; wait $irc_inspircd_pid 2>/dev/null; rm -rf '$irc_dir'")

irc_wait_for_port "$irc_ngircd_port" "$irc_dir/ngircd.log"
irc_wait_for_port "$irc_inspircd_port" "$irc_dir/inspircd.log"
irc_wait_for_port "$irc_tls_port" "$irc_dir/inspircd.log"

export SWITCHBOARD_TEST_IRC_NGIRCD_PORT=$irc_ngircd_port
export SWITCHBOARD_TEST_IRC_INSPIRCD_PORT=$irc_inspircd_port
export SWITCHBOARD_TEST_IRC_TLS_PORT=$irc_tls_port
export SWITCHBOARD_TEST_IRC_CA=$irc_dir/ca.pem
export SWITCHBOARD_TEST_IRC_NGIRCD=$(command -v ngircd)
export SWITCHBOARD_TEST_IRC_INSPIRCD=$(command -v inspircd)
echo "IRC servers: ngircd on $irc_ngircd_port, InspIRCd on $irc_inspircd_port (TLS on $irc_tls_port), files in $irc_dir"

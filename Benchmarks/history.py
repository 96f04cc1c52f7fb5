#!/usr/bin/env python3
"""Costs that must not grow with history, on a database of ROOMS x MESSAGES messages (1 M by default).

usage: python3 Benchmarks/history.py --server-binary .build/release/switchboard --database FILE_OR_POSTGRES_URL
           [--rooms 10] [--messages 100000] [--repeat 20] [--workdir DIR]

It makes the database through the server's own tools: a small server registers `writer` and
`reader` and creates the rooms (writer makes them, reader is a member who has read nothing);
`switchboard export` copies that out, the copy gets MESSAGES messages per room by `writer`, and
`switchboard import` reads it into --database (an empty SQLite file or PostgreSQL database). Then
it measures, against `switchboard serve` on that database:

  start      spawn to the first answer of /healthz (3 starts)
  rooms      GET /api/rooms as `reader` (every room with MESSAGES unread)
  history    GET /api/rooms/ID/messages?before=MESSAGES/2&limit=50, a page in the middle
  replay     a WebSocket join with since = lastSeq - 1000 as `writer`, to its ack (after the 1,000)

and prints one JSON object (milliseconds). Progress goes to standard error. Standard library only.
"""
import argparse, base64, http.client, json, os, signal, socket, struct, subprocess, sys, time


def log(text):
    print(text, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """`switchboard serve` on a database, started and stopped by this script."""

    def __init__(self, binary, database, logfile):
        self.binary, self.database, self.logfile = binary, database, logfile
        self.process = None

    def start(self):
        self.port = free_port()
        env = dict(os.environ, LOG_LEVEL=os.environ.get("LOG_LEVEL", "warning"))
        started = time.monotonic()
        self.process = subprocess.Popen(
            [self.binary, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--database", self.database,
             "--bcrypt-cost", "4", "--auth-attempts-per-minute", "1000000"],
            stdout=self.logfile, stderr=self.logfile, env=env)
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server ended ({self.process.returncode}); see its log")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    c.close()
                    return (time.monotonic() - started) * 1000
            except OSError:
                pass
            if time.monotonic() - started > 120:
                raise SystemExit("the server did not answer /healthz within 120 s")
            time.sleep(0.002)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class API:
    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        self.connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status >= 300:
            raise SystemExit(f"{method} {path}: {answer.status} {data[:300]!r}")
        return json.loads(data or b"{}")


def timed(count, action):
    """Milliseconds of each of `count` calls."""
    times = []
    for i in range(count):
        started = time.perf_counter()
        action(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times):
    ordered = sorted(times)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"count": len(ordered), "p50": round(pick(0.5), 2), "p99": round(pick(0.99), 2), "max": round(ordered[-1], 2)}


def websocket(port, token):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit(f"WebSocket upgrade refused: {head[:200]!r}")
    return s, head.split(b"\r\n\r\n", 1)[1]


def frame(text):
    payload, mask = text.encode(), os.urandom(4)
    n = len(payload)
    header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def build_database(args, log_file):
    """The rooms and users through a small server, the messages through export and import."""
    seed = os.path.join(args.workdir, "history-seed.db")
    copy = os.path.join(args.workdir, "history-copy.jsonl")
    for path in (seed, seed + "-wal", seed + "-shm"):
        if os.path.exists(path):
            os.remove(path)
    server = Server(args.server_binary, seed, log_file)
    server.start()
    try:
        api = API(server.port)
        writer = api.call("POST", "/api/register", {"username": "writer", "password": "history-password"})
        reader = api.call("POST", "/api/register", {"username": "reader", "password": "history-password"})
        for r in range(args.rooms):
            api.call("POST", "/api/rooms", {"name": f"history-{r}", "members": [reader["user"]["id"]]}, writer["token"])
    finally:
        server.stop()
    subprocess.run([args.server_binary, "export", "--database", seed, "--output", copy], check=True, stderr=log_file)
    lines = [json.loads(line) for line in open(copy)]
    header, records = lines[0], lines[1:]
    writer_id = writer["user"]["id"]
    rooms = [r for r in records if r["type"] == "room"]
    started = time.time()
    now = int(started * 1000) - args.rooms * args.messages  # a millisecond apart, ending now
    padding = "x" * 100
    log(f"writing {args.rooms * args.messages:,} messages to {copy}")
    with open(copy, "w") as out:
        header["counts"]["messages"] = args.rooms * args.messages
        out.write(json.dumps(header) + "\n")
        for record in records:
            if record["type"] == "room":
                record["lastSeq"] = args.messages
            if record["type"] == "member":
                record["readSeq"] = args.messages if record["userId"] == writer_id else 0
            out.write(json.dumps(record) + "\n")
        for index, room in enumerate(rooms):
            room_id = room["id"]
            for seq in range(1, args.messages + 1):
                out.write('{"type":"message","id":"m_%02dh%017d","roomId":"%s","seq":%d,"userId":"%s","content":"%s",'
                          '"createdAt":%d,"clientId":null,"replyTo":null,"meta":null,"deleted":false,"editedAt":null,"reactions":{}}\n'
                          % (index, seq, room_id, seq, writer_id, (f"history {index}.{seq} " + padding)[:100], now))
                now += 1
    log("importing")
    started = time.monotonic()
    subprocess.run([args.server_binary, "import", "--database", args.database, "--input", copy], check=True, stderr=log_file)
    imported = time.monotonic() - started
    os.remove(copy)
    for path in (seed, seed + "-wal", seed + "-shm"):
        if os.path.exists(path):
            os.remove(path)
    return writer["token"], reader["token"], [r["id"] for r in rooms], imported


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-binary", required=True)
    parser.add_argument("--database", required=True, help="an empty SQLite file (made) or postgres:// URL of an empty database")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100_000, help="messages per room")
    parser.add_argument("--replay", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workdir", default=".")
    args = parser.parse_args()
    log_file = open(os.path.join(args.workdir, "history-server.log"), "a")

    writer, reader, rooms, imported = build_database(args, log_file)
    total = args.rooms * args.messages
    log(f"imported {total:,} messages in {imported:.1f} s")

    server = Server(args.server_binary, args.database, log_file)
    starts = []
    for _ in range(3):
        starts.append(server.start())
        server.stop()
    log("start to /healthz: " + ", ".join(f"{s:.0f}" for s in starts) + " ms")
    server.start()
    try:
        api = API(server.port)
        unread = []

        def list_rooms(_):
            answer = api.call("GET", "/api/rooms", token=reader)
            unread.append(sum(room.get("unread", 0) for room in answer["rooms"]))

        api.call("GET", "/api/rooms", token=reader)  # a first call opens the connection
        rooms_times = timed(args.repeat, list_rooms)
        page_times = timed(args.repeat, lambda i: api.call(
            "GET", f"/api/rooms/{rooms[i % len(rooms)]}/messages?before={args.messages // 2}&limit=50", token=reader))

        replay = min(args.replay, args.messages)
        sockets = [websocket(server.port, writer)]

        def rejoin(i):
            s, buffered = sockets[0]
            ref = f"join-{i}"
            s.sendall(frame(json.dumps({"type": "join", "roomId": rooms[i % len(rooms)], "ref": ref,
                                        "data": {"since": args.messages - replay}})))
            needle, seen = f'"ref":"{ref}"'.encode(), buffered
            while needle not in seen:
                data = s.recv(1 << 20)
                if not data:
                    raise SystemExit("the server closed the WebSocket during a replay")
                seen = seen[-64:] + data
            # A leave, so that the next join of the same room replays again; its ack is read with the next join.
            s.sendall(frame(json.dumps({"type": "leave", "roomId": rooms[i % len(rooms)], "ref": f"leave-{i}"})))
            sockets[0] = (s, b"")

        replay_times = timed(args.repeat, rejoin)
    finally:
        server.stop()

    result = {
        "scenario": "history", "rooms": args.rooms, "messagesPerRoom": args.messages, "messages": total,
        "database": "postgres" if args.database.startswith("postgres") else "sqlite",
        "importSeconds": round(imported, 1), "startMs": [round(s, 1) for s in starts],
        "roomsMs": summary(rooms_times), "unreadSeen": sorted(set(unread)), "historyPageMs": summary(page_times),
        "replay": replay, "replayMs": summary(replay_times),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Costs that must not grow with history (issue 9), on a database of 1 M messages.

Builds a SQLite database of ROOMS rooms x PER_ROOM messages (1 M by default), all unread by one
member, then times against a running `switchboard serve`:
  start   spawn of the server to /healthz answering
  rooms   GET /api/rooms of the member with every message unread (unread = PER_ROOM each)
  history GET /api/rooms/{id}/messages?before=MIDDLE&limit=50 (a page in the middle of a room)
  replay  a WebSocket `join` with since = lastSeq - 1000 to its ack (1,000 messages replayed)
A benchmark, not a test: it prints figures (median and p90 of each) and fails only when an answer
is wrong. With --postgres URL the same database is also copied into PostgreSQL (export, import)
and measured there.

  wswift build --product switchboard
  wrun python3 scripts/bench-history.py .build/debug/switchboard            # SQLite
  wrun python3 scripts/bench-history.py .build/release/switchboard --postgres postgres://postgres@127.0.0.1:PORT/bench

Standard library only (the WebSocket client is the few lines it needs).
"""
import argparse, base64, json, os, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, time, urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, method, path, token=None, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


class Server:
    def __init__(self, binary, database):
        self.port = free_port()
        self.started = time.perf_counter()
        self.process = subprocess.Popen([binary, "serve", "--port", str(self.port), "--database", database],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    sys.exit(f"the server did not start on {database}")
                time.sleep(0.001)
        self.start_seconds = time.perf_counter() - self.started

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


class WebSocket:
    def __init__(self, port, token):
        self.socket = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.socket.recv(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            sys.exit(f"WebSocket upgrade refused: {head!r}")

    def send(self, value):
        payload = json.dumps(value).encode()
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + length.to_bytes(2, "big"))
        self.socket.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def read(self, count):
        while len(self.buffer) < count:
            chunk = self.socket.recv(1 << 20)
            if not chunk:
                sys.exit("the server closed the WebSocket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self):
        """The next text message (control frames skipped; the server does not fragment these)."""
        while True:
            first, second = self.read(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.read(8), "big")
            payload = self.read(length)
            if first & 0x0F == 0x1:
                return json.loads(payload)

    def close(self):
        self.socket.close()


def summary(values):
    values = sorted(values)
    return f"median {statistics.median(values) * 1000:.2f} ms, p90 {values[int(len(values) * 0.9) - 1] * 1000:.2f} ms, n={len(values)}"


def build(binary, path, rooms, per_room):
    server = Server(binary, path)
    writer = http(server.port, "POST", "/api/register", body={"username": "writer", "password": "password123"})
    reader = http(server.port, "POST", "/api/register", body={"username": "reader", "password": "password123"})
    room_ids = [http(server.port, "POST", "/api/rooms", writer["token"],
                     {"name": f"room{r}", "isPublic": False, "members": [reader["user"]["id"]]})["room"]["id"] for r in range(rooms)]
    server.stop()
    started = time.perf_counter()
    database = sqlite3.connect(path)
    now = int(time.time() * 1000)
    with database:
        for number, room_id in enumerate(room_ids):
            database.executemany(
                "INSERT INTO messages (room_id, seq, id, user_id, content, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                ((room_id, seq, f"bench-{number}-{seq}", writer["user"]["id"], f"message {seq} of a history long enough to matter",
                  now - per_room + seq) for seq in range(1, per_room + 1)))
            database.execute("UPDATE rooms SET last_seq = ? WHERE id = ?", (per_room, room_id))
            database.execute("UPDATE members SET read_seq = ? WHERE room_id = ? AND user_id = ?", (per_room, room_id, writer["user"]["id"]))
    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    print(f"built {rooms} x {per_room} messages in {time.perf_counter() - started:.1f} s ({os.path.getsize(path) >> 20} MB)", flush=True)


def measure(binary, database, rooms, per_room, iterations, label):
    starts = []
    for _ in range(3):
        server = Server(binary, database)
        starts.append(server.start_seconds)
        server.stop()
    server = Server(binary, database)
    try:
        reader = http(server.port, "POST", "/api/login", body={"username": "reader", "password": "password123"})["token"]
        writer = http(server.port, "POST", "/api/login", body={"username": "writer", "password": "password123"})["token"]
        listings = []
        for _ in range(iterations):
            began = time.perf_counter()
            listed = http(server.port, "GET", "/api/rooms", reader)["rooms"]
            listings.append(time.perf_counter() - began)
            if len(listed) != rooms or any(room["unread"] != per_room for room in listed):
                sys.exit(f"wrong unread counts: {[room['unread'] for room in listed]}")
        room_id = listed[0]["id"]
        pages = []
        for _ in range(iterations):
            began = time.perf_counter()
            page = http(server.port, "GET", f"/api/rooms/{room_id}/messages?before={per_room // 2 + 1}&limit=50", reader)
            pages.append(time.perf_counter() - began)
            if [m["seq"] for m in page["messages"]] != list(range(per_room // 2 - 49, per_room // 2 + 1)):
                sys.exit("wrong history page")
        replays = []
        for number in range(iterations):
            socket = WebSocket(server.port, writer)
            began = time.perf_counter()
            socket.send({"type": "join", "roomId": room_id, "ref": f"j{number}", "data": {"since": per_room - 1000}})
            replayed = 0
            while True:
                frame = socket.receive()
                if frame.get("type") == "message":
                    replayed += 1
                elif frame.get("ref") == f"j{number}":
                    break
            replays.append(time.perf_counter() - began)
            socket.close()
            if replayed != 1000:
                sys.exit(f"replayed {replayed} messages, not 1000: {frame}")
    finally:
        server.stop()
    print(f"[{label}] start to /healthz: {summary(starts)}")
    print(f"[{label}] GET /api/rooms ({rooms} rooms x {per_room} unread): {summary(listings)}")
    print(f"[{label}] history page of 50 in the middle: {summary(pages)}")
    print(f"[{label}] join replaying 1,000: {summary(replays)}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary", help="the switchboard executable")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--per-room", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--postgres", help="also copy the database to this PostgreSQL URL (an empty database) and measure it there")
    parser.add_argument("--keep", help="build the SQLite database at this path and keep it (reused when it exists)")
    arguments = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="switchboard-bench-history-")
    path = arguments.keep or os.path.join(folder, "history.db")
    if not os.path.exists(path):
        build(arguments.binary, path, arguments.rooms, arguments.per_room)
    measure(arguments.binary, path, arguments.rooms, arguments.per_room, arguments.iterations, "sqlite")
    if arguments.postgres:
        dump = os.path.join(folder, "history.jsonl")
        subprocess.run([arguments.binary, "export", "--database", path, "--output", dump], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([arguments.binary, "import", "--database", arguments.postgres, "--input", dump], check=True, stdout=subprocess.DEVNULL)
        measure(arguments.binary, arguments.postgres, arguments.rooms, arguments.per_room, arguments.iterations, "postgres")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# Opens and closes WebSocket connections against a running server, 100 at a time, to watch its
# memory (issue 8's leak): python3 Benchmarks/churn.py PORT TOTAL [join]
# Each connection sends a ping (or, with `join`, joins a room), waits for the answer and closes.
# Read the server's RSS between runs (grep VmRSS /proc/PID/status). The server needs
# `--max-connections-per-address 1000` (100 connections at once from one address) and allows
# 30 registrations a minute per address, one per run. Standard library only.
import socket, os, sys, json, struct, urllib.request, threading
port = int(sys.argv[1]); total = int(sys.argv[2]); join = len(sys.argv) > 3
def req(method, path, body=None, token=None):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(body).encode() if body is not None else None)
    r.add_header("Content-Type", "application/json")
    if token: r.add_header("Authorization", "Bearer " + token)
    return json.loads(urllib.request.urlopen(r).read() or b"{}")
name = "u%d" % os.getpid()
a = req("POST", "/api/register", {"username": name, "password": "password123"})
tok = a["token"]
room = req("POST", "/api/rooms", {"name": "r", "isPublic": True}, tok)["room"]["id"]
def frame(text, op=1):
    p = text.encode(); m = os.urandom(4)
    h = bytes([0x80 | op]); n = len(p)
    h += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    return h + m + bytes(b ^ m[i % 4] for i, b in enumerate(p))
def one():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(4096)
    msg = {"type": "join", "roomId": room, "ref": "x"} if join else {"type": "ping", "ref": "x"}
    s.sendall(frame(json.dumps(msg)))
    while b'"ref":"x"' not in buf:
        d = s.recv(65536)
        if not d: break
        buf += d
    s.sendall(bytes([0x88, 0x82]) + b"\0\0\0\0" + b"\x03\xe8")  # close 1000, masked with zeros
    try:
        while s.recv(4096): pass
    except Exception: pass
    s.close()
def worker(n):
    for _ in range(n): one()
ts = [threading.Thread(target=worker, args=(total // 100,)) for _ in range(100)]
[t.start() for t in ts]; [t.join() for t in ts]
print("done", total)

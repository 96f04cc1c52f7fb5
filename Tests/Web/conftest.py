"""Fixtures of the browser tests: the built `switchboard serve` on a free loopback port and a
temporary database, Debian's Chromium driven by Playwright, and helpers for the page.

Run by scripts/checks/web.sh; by hand: `SWITCHBOARD_BINARY=.build/debug/switchboard pytest Tests/Web`.
"""
import itertools
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("SWITCHBOARD_BINARY", str(ROOT / ".build/debug/switchboard"))
CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/lib/chromium/chromium")
PASSWORD = "correct horse battery"
TEST_SECONDS = 180
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 1000}x{next(_names)}"


def free_port() -> int:
    """A free loopback port; within SWITCHBOARD_WEB_PORTS (e.g. 3100-3199) when set."""
    wanted = os.environ.get("SWITCHBOARD_WEB_PORTS")
    candidates = [0]
    if wanted:
        low, high = (int(part) for part in wanted.split("-"))
        candidates = list(range(low, high + 1))
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free port in {wanted}")


class Server:
    """`switchboard serve` as a child process; `restart()` keeps its port and database."""

    def __init__(self, folder: Path):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"{BINARY} is missing: build it first (swift build), or set SWITCHBOARD_BINARY")
        self.folder = folder
        self.database = folder / "web-tests.db"
        self.port = free_port()
        self.process = None
        self.log = open(folder / "server.log", "ab")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.process = subprocess.Popen(
            [BINARY, "serve", "--port", str(self.port), "--database", str(self.database), "--bcrypt-cost", "4",
             "--messages-per-second", "1000", "--message-burst", "1000", "--auth-attempts-per-minute", "1000"],
            stdout=self.log, stderr=self.log, env={**os.environ, "SWITCHBOARD_WEB": "on"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"switchboard serve exited with {self.process.returncode}; see {self.folder}/server.log")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("switchboard serve did not answer /healthz within 30 s")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self):
        self.stop()
        self.start()

    def api(self, method: str, path: str, body=None, token=None):
        """A call to the HTTP API; returns (status, json)."""
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def register(self, username: str, display_name=None):
        body = {"username": username, "password": PASSWORD}
        if display_name:
            body["displayName"] = display_name
        status, answer = self.api("POST", "/api/register", body)
        assert status == 201, answer
        return answer

    def messages(self, token: str, room_id: str):
        status, answer = self.api("GET", f"/api/rooms/{room_id}/messages?limit=200", token=token)
        assert status == 200, answer
        return answer["messages"]


class UpgradeRefusingProxy:
    """An HTTP proxy in front of a server that refuses WebSocket upgrades with 403, as some
    corporate proxies do; every other request passes (one per connection)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        with client:
            request = self.read_head(client)
            if request is None:
                return
            head, rest = request
            if b" /ws" in head.split(b"\r\n")[0]:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                upstream.sendall(self.closing(head) + rest)
                threading.Thread(target=self.pipe, args=(client, upstream), daemon=True).start()
                # The answer says `Connection: close` too, so that the browser sends nothing more on this connection.
                answer = self.read_head(upstream)
                if answer is None:
                    return
                client.sendall(self.closing(answer[0]) + answer[1])
                self.pipe(upstream, client)

    @staticmethod
    def read_head(connection):
        """(head, what came after it), or None when the connection closed first."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        return tuple(data.split(b"\r\n\r\n", 1))

    @staticmethod
    def closing(head: bytes) -> bytes:
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"

    @staticmethod
    def pipe(source, destination):
        try:
            while chunk := source.recv(65536):
                destination.sendall(chunk)
        except OSError:
            pass

    def close(self):
        self.listener.close()


@pytest.fixture(autouse=True)
def time_limit():
    """Every test has a time limit, as the Swift tests do."""
    def expired(*_):
        raise TimeoutError(f"the test took more than {TEST_SECONDS} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def workdir():
    folder = Path(os.environ.get("SWITCHBOARD_WEB_OUTPUT") or tempfile.mkdtemp(prefix="switchboard-web-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def screenshots(workdir):
    folder = workdir / "screenshots"
    folder.mkdir(exist_ok=True)
    yield folder
    print(f"\nscreenshots of the web page: {folder}")


@pytest.fixture(scope="session")
def server(workdir):
    folder = workdir / "shared-server"
    folder.mkdir(exist_ok=True)
    running = Server(folder)
    running.start()
    yield running
    running.stop()


@pytest.fixture()
def own_server(workdir, request):
    """A server for one test, which the test may stop and restart."""
    folder = workdir / request.node.name
    folder.mkdir(exist_ok=True)
    running = Server(folder)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"],
        )
        yield launched
        launched.close()


@pytest.fixture()
def new_page(browser):
    """Makes pages, each in a context of its own (a user of its own); all closed after the test."""
    contexts = []

    def make(server: Server, **options) -> Page:
        context = browser.new_context(base_url=server.url, locale="en-GB", timezone_id="UTC", **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        # Failed requests are logged by the browser itself (a 404 of a 1.1 route on an older server, a
        # refused connection while the server restarts); errors of the page's own code are kept.
        page.on("console", lambda message: message.type == "error" and not message.text.startswith("Failed to load resource")
                and "WebSocket connection to" not in message.text and page.errors.append(message.text))
        return page

    yield make
    for context in contexts:
        context.close()


def register(page: Page, username: str, display_name=None):
    """Creates an account through the page's form and waits for the chat view."""
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    if display_name:
        page.get_by_label("Display name").fill(display_name)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")


def session_of(page: Page):
    return page.evaluate("JSON.parse(localStorage.getItem('switchboard.session'))")


def create_room(page: Page, name: str, public=False):
    page.get_by_text("Create a room", exact=True).click()
    page.get_by_label("Room name").fill(name)
    if public:
        page.locator("#room-public").check()
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#room-title")).to_have_text(name)


def send(page: Page, text: str):
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def log(page: Page):
    """The open room's messages, older and newer."""
    return page.locator("#history .msg, #log .msg")

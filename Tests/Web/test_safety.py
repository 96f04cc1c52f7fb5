"""Content is text, never markup; the page's headers; the page makes no request to another origin."""
import re
import urllib.request

from playwright.sync_api import expect

from conftest import create_room, log, register, send, session_of, unique

SCRIPT = "<script>window.pwned = 'script'</script>"
IMAGE = "<img src=x onerror=\"window.pwned='img'\">"


def test_markup_in_a_message_a_display_name_and_a_room_name_shows_as_text(server, new_page):
    mallory = new_page(server)
    register(mallory, unique("mallory"), f"{IMAGE} Mallory")
    token = session_of(mallory)["token"]
    room_name = f"{SCRIPT} room"
    mallory.get_by_text("Create a room", exact=True).click()
    mallory.get_by_label("Room name").fill(room_name)
    mallory.get_by_role("button", name="Create", exact=True).click()
    expect(mallory.locator("#room-title")).to_have_text(room_name)
    send(mallory, SCRIPT)
    send(mallory, IMAGE)
    room_id = mallory.evaluate("decodeURIComponent(location.hash.slice('#room='.length))")

    # A second person sees the same, live and from history.
    victim = new_page(server)
    register(victim, unique("victim"))
    assert server.api("POST", f"/api/rooms/{room_id}/members", {"userId": session_of(victim)["user"]["id"]}, token=token)[0] == 200
    victim.locator("#room-list a").first.click()
    send(mallory, f"and {IMAGE} again")
    for page in (mallory, victim):
        expect(log(page).locator(".content")).to_have_text([SCRIPT, IMAGE, f"and {IMAGE} again"])
        expect(page.locator("#room-title")).to_have_text(room_name)
        expect(page.locator("#room-list .room-name").first).to_contain_text(room_name)
        expect(log(page).first.locator(".author")).to_have_text(f"{IMAGE} Mallory")
        assert page.locator("main img, #chat-view img, #chat-view script").count() == 0
        assert page.evaluate("window.pwned") is None
        assert page.errors == []


def test_page_headers_are_strict_and_every_request_stays_on_the_origin(server, new_page):
    with urllib.request.urlopen(server.url + "/") as response:
        headers = response.headers
        html = response.read().decode()
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert re.search(r"connect-src 'self'[^;]*;", policy)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "<style" not in html and " style=" not in html and "<script>" not in html

    page = new_page(server)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    violations = []
    page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))
    register(page, unique("careful"))
    send_room = unique("origin")
    page.get_by_text("Create a room", exact=True).click()
    page.get_by_label("Room name").fill(send_room)
    page.get_by_role("button", name="Create", exact=True).click()
    send(page, "hello")
    expect(log(page)).to_have_count(1)
    origin = server.url
    assert requests and all(url.startswith(origin) or url.startswith(origin.replace("http", "ws")) for url in requests), requests
    assert violations == []
    # The whole page, as the browser fetched it.
    weight = page.evaluate("performance.getEntriesByType('resource').filter(entry => entry.name.includes('/assets/'))"
                           ".concat(performance.getEntriesByType('navigation'))"
                           ".reduce((sum, entry) => sum + entry.decodedBodySize, 0)")
    print(f"\nthe page weighs {weight} bytes uncompressed")
    assert weight < 80_000


def test_signing_out_leaves_nothing_of_the_user_in_the_browser(server, new_page):
    page = new_page(server)
    register(page, unique("shared"))
    create_room(page, "kiosk")
    send(page, "on a shared computer")
    message = log(page).first
    message.hover()
    message.get_by_role("button", name="React with 🎉").click()
    expect(message.locator(".reaction")).to_have_text("🎉 1")
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('switchboard.')).length") > 0
    page.locator("#sign-out").click()
    expect(page.locator("#sign-in-view")).to_be_visible()
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('switchboard.'))") == []
    assert page.errors == []

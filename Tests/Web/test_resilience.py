"""The page's client keeps what was typed: across a server restart, and across a reload while offline."""
import re

from playwright.sync_api import expect

from conftest import PASSWORD, UpgradeRefusingProxy, create_room, log, register, send, session_of, unique


def test_a_message_typed_while_the_server_is_down_is_delivered_once_after_it_comes_back(own_server, new_page, screenshots):
    page = new_page(own_server)
    register(page, unique("ana"))
    token = session_of(page)["token"]
    create_room(page, unique("restart"))
    room_id = page.evaluate("decodeURIComponent(location.hash.slice('#room='.length))")
    send(page, "before the restart")
    expect(log(page)).to_have_count(1)

    own_server.stop()
    indicator = page.locator("#connection-text")
    expect(indicator).to_have_text(re.compile(r"^Reconnecting in \d+ s \(attempt \d+\)"))
    send(page, "typed while the server was down")
    expect(indicator).to_contain_text("1 message waiting")
    expect(page.locator("#pending .msg")).to_have_count(1)
    expect(page.locator("#connection-status")).to_contain_text("Reconnecting")
    page.screenshot(path=str(screenshots / "reconnecting-light.png"))

    own_server.start()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=40_000)
    expect(log(page).filter(has_text="typed while the server was down")).to_have_count(1)
    expect(page.locator("#pending .msg")).to_have_count(0)
    expect(indicator).to_have_text("Connected")
    contents = [message["content"] for message in own_server.messages(token, room_id)]
    assert contents == ["before the restart", "typed while the server was down"]

    # And the page recovered: a message sent by someone else now arrives live.
    assert own_server.api("POST", f"/api/rooms/{room_id}/messages", {"content": "after", "clientId": "x1"}, token=token)[0] == 201
    expect(log(page).filter(has_text="after")).to_have_count(1)
    assert [e for e in page.errors if "WebSocket" not in e and "ERR_CONNECTION_REFUSED" not in e] == []


def test_a_message_typed_offline_survives_a_reload_and_is_sent_once(server, new_page):
    page = new_page(server)
    register(page, unique("ana"))
    token = session_of(page)["token"]
    create_room(page, unique("offline"))
    room_id = page.evaluate("decodeURIComponent(location.hash.slice('#room='.length))")

    page.context.set_offline(True)
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    send(page, "typed offline")
    expect(page.locator("#connection-text")).to_have_text("Offline with 1 message waiting")
    expect(page.locator("#pending .msg")).to_have_text(re.compile("typed offline"))
    try:
        page.reload()
    except Exception:
        pass  # the reload fails while offline: the outbox is in the browser's storage
    page.context.set_offline(False)
    page.goto(f"/#room={room_id}")
    expect(log(page).filter(has_text="typed offline")).to_have_count(1)
    expect(page.locator("#pending .msg")).to_have_count(0)
    page.reload()
    expect(log(page).filter(has_text="typed offline")).to_have_count(1)
    contents = [message["content"] for message in server.messages(token, room_id)]
    assert contents == ["typed offline"]
    assert page.evaluate("localStorage.getItem('switchboard.outbox.' + JSON.parse(localStorage.getItem('switchboard.session')).user.id)") is None


def test_a_page_whose_websocket_is_refused_falls_back_to_polling(server, new_page):
    proxy = UpgradeRefusingProxy(server.port)
    page = new_page(proxy)
    register_without_websocket(page, unique("poller"))
    expect(page.locator("#connection-text")).to_have_text("Connected (polling fallback)", timeout=20_000)
    token = session_of(page)["token"]
    create_room(page, unique("polled"))
    room_id = page.evaluate("decodeURIComponent(location.hash.slice('#room='.length))")

    send(page, "sent over HTTP")
    expect(log(page).filter(has_text="sent over HTTP")).to_have_count(1)
    other = server.register(unique("other"))
    assert server.api("POST", f"/api/rooms/{room_id}/members", {"userId": other["user"]["id"]}, token=token)[0] == 200
    assert server.api("POST", f"/api/rooms/{room_id}/messages", {"content": "polled in"}, token=other["token"])[0] == 201
    expect(log(page).filter(has_text="polled in")).to_have_count(1)
    assert [message["content"] for message in server.messages(token, room_id)] == ["sent over HTTP", "polled in"]
    assert page.errors == []
    proxy.close()


def register_without_websocket(page, username):
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#account")).to_be_visible()

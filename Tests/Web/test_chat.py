"""Two people chat in two browser contexts: messages, typing, presence, reactions, replies, unread counts."""
import re

from playwright.sync_api import expect

from conftest import create_room, log, register, send, session_of, unique


def test_two_users_chat_type_react_and_reply(server, new_page, screenshots):
    ana_name, bob_name = unique("ana"), unique("bob")
    ana, bob = new_page(server), new_page(server)
    register(ana, ana_name, "Ana")
    register(bob, bob_name, "Bob")
    bob_id = session_of(bob)["user"]["id"]
    ana_token = session_of(ana)["token"]

    room = unique("lobby")
    create_room(ana, room, public=True)
    room_id = ana.evaluate("decodeURIComponent(location.hash.slice('#room='.length))")

    # Bob finds the public room and joins it; on a server without the search (1.1), the page says so.
    bob.get_by_text("Find a public room", exact=True).click()
    bob.get_by_label("Search public rooms").fill(room)
    bob.get_by_role("button", name="Search").click()
    status, _ = server.api("GET", "/api/rooms/public?query=x", token=ana_token)
    if status == 404:
        expect(bob.locator("#public-results")).to_contain_text("cannot search public rooms")
        assert server.api("POST", f"/api/rooms/{room_id}/members", {"userId": bob_id}, token=session_of(bob)["token"])[0] == 200
        bob.get_by_role("link", name=re.compile(room)).click()  # the room arrived in Bob's list live
    else:
        bob.get_by_role("button", name=f"Join {room}").click()
    expect(bob.locator("#room-title")).to_have_text(room)

    # Presence: Ana sees Bob online in the room's members.
    expect(ana.locator("#members li", has_text="Bob").locator(".presence")).to_have_attribute("aria-label", "online")

    # Typing, then a message.
    bob.get_by_label("Message", exact=True).press_sequentially("hel")
    expect(ana.locator("#typing")).to_have_text("Bob is typing…")
    bob.get_by_label("Message", exact=True).press_sequentially("lo Ana")
    bob.get_by_label("Message", exact=True).press("Enter")
    expect(log(ana).filter(has_text="hello Ana")).to_have_count(1)
    expect(ana.locator("#log .msg").last.locator(".author")).to_have_text("Bob")
    expect(ana.locator("#typing")).to_have_text("")
    expect(log(bob).filter(has_text="hello Ana")).to_have_count(1)
    expect(bob.get_by_label("Message", exact=True)).to_have_value("")

    # Shift+Enter is a new line, Enter sends.
    box = ana.get_by_label("Message", exact=True)
    box.press_sequentially("two")
    box.press("Shift+Enter")
    box.press_sequentially("lines")
    box.press("Enter")
    expect(log(bob).filter(has_text="two").locator(".content")).to_have_text("two\nlines")

    # Ana replies to Bob's message.
    message = log(ana).filter(has_text="hello Ana")
    message.hover()
    message.get_by_role("button", name="Reply").click()
    expect(ana.locator("#replying-text")).to_contain_text("Replying to Bob")
    send(ana, "hi Bob")
    reply = log(bob).filter(has_text="hi Bob")
    expect(reply.locator(".reply-quote")).to_contain_text("Reply to Bob: hello Ana")
    stored = [m for m in server.messages(ana_token, room_id) if m["content"] == "hi Bob"]
    assert len(stored) == 1 and stored[0]["replyTo"] is not None

    # Reactions: Bob adds one, Ana sees it and adds hers, then takes it back.
    reply.hover()
    reply.get_by_role("button", name="React with 👍").click()
    on_ana = log(ana).filter(has_text="hi Bob").locator(".reaction")
    expect(on_ana).to_have_text("👍 1")
    expect(on_ana).to_have_attribute("aria-pressed", "false")
    on_ana.click()
    expect(on_ana).to_have_text("👍 2")
    expect(on_ana).to_have_attribute("aria-pressed", "true")
    expect(log(bob).filter(has_text="hi Bob").locator(".reaction")).to_have_text("👍 2")
    on_ana.click()
    expect(on_ana).to_have_text("👍 1")
    expect(log(bob).filter(has_text="hi Bob").locator(".reaction")).to_have_text("👍 1")

    # The room list: the last message and the unread count, live, while Ana is in another room.
    create_room(ana, unique("quiet"))
    send(bob, "are you there?")
    entry = ana.locator("#room-list a", has_text=room)
    expect(entry.locator(".last")).to_have_text("Bob: are you there?")
    expect(entry.locator(".unread")).to_have_text("1 unread")
    send(bob, "hello?")
    expect(entry.locator(".unread")).to_have_text("2 unread")
    entry.click()
    expect(entry.locator(".unread")).to_have_count(0)
    expect(log(ana).filter(has_text="hello?")).to_have_count(1)

    for page, who in ((ana, "ana"), (bob, "bob")):
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=str(screenshots / f"room-{who}-{scheme}.png"))

    # Bob leaves: Ana sees him offline.
    bob.context.close()
    expect(ana.locator("#members li", has_text="Bob").locator(".presence")).to_have_attribute("aria-label", "offline")
    assert ana.errors == []


def test_older_history_loads_on_scroll_up(server, new_page):
    name = unique("reader")
    auth = server.register(name)
    status, created = server.api("POST", "/api/rooms", {"name": "history"}, token=auth["token"])
    room_id = created["room"]["id"]
    for number in range(1, 121):
        status, _ = server.api("POST", f"/api/rooms/{room_id}/messages", {"content": f"message {number}", "clientId": f"h{number}"}, token=auth["token"])
        assert status == 201
    page = new_page(server)
    page.goto("/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name=re.compile("history")).click()
    expect(log(page)).to_have_count(50)
    expect(log(page).last).to_contain_text("message 120")
    page.locator("#timeline").evaluate("element => element.scrollTo(0, 0)")
    expect(log(page)).to_have_count(100)
    expect(log(page).first).to_contain_text("message 21")
    page.locator("#timeline").evaluate("element => element.scrollTo(0, 0)")
    expect(log(page)).to_have_count(120)
    expect(log(page).first).to_contain_text("message 1")
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
    # Nothing doubled, in order.
    seqs = page.locator("#history .msg, #log .msg").evaluate_all("items => items.map(item => Number(item.dataset.seq))")
    assert seqs == list(range(1, 121))
    assert page.errors == []

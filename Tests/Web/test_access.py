"""Keyboard only, a phone-sized screen, and an axe scan of each view, light and dark."""
import re

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from conftest import PASSWORD, create_room, log, register, send, session_of, unique

FOCUSED = "(() => { const e = document.activeElement; const s = getComputedStyle(e); " \
          "return {id: e.id, tag: e.tagName, text: (e.getAttribute('aria-label') || e.textContent || '').trim().slice(0, 40), " \
          "cls: e.className, outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; })()"


def focused(page: Page):
    return page.evaluate(FOCUSED)


def assert_focus_visible(page: Page):
    state = focused(page)
    assert state["outline"] != "none" and state["width"] >= 2, state


def tab_until(page: Page, predicate, key="Tab", limit=30):
    for _ in range(limit):
        page.keyboard.press(key)
        state = focused(page)
        if predicate(state):
            assert_focus_visible(page)
            return state
    raise AssertionError(f"focus never reached the element; last: {focused(page)}")


def test_the_whole_flow_with_the_keyboard_alone(server, new_page):
    friend = server.register(unique("friend"), "Friend")
    page = new_page(server)
    page.goto("/")
    name = unique("keys")
    # The sign-in form has the focus; Tab moves through it.
    assert focused(page)["id"] == "username"
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    tab_until(page, lambda s: s["text"] == "Create account")
    page.keyboard.press("Enter")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

    # No room yet: the focus is on "Create a room".
    assert focused(page)["text"].startswith("Create a room")
    assert_focus_visible(page)
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.type("keyboard room")
    page.keyboard.press("Enter")
    expect(page.locator("#room-title")).to_have_text("keyboard room")
    expect(page.locator("#composer-input")).to_be_focused()

    page.keyboard.type("first")
    page.keyboard.press("Enter")
    page.keyboard.type("second")
    page.keyboard.press("Enter")
    expect(log(page)).to_have_count(2)

    # Back to the messages: one tab stop, arrows move between messages, Tab reaches a message's buttons.
    tab_until(page, lambda s: "msg" in s["cls"], key="Shift+Tab")
    page.keyboard.press("ArrowUp")
    state = focused(page)
    assert "msg" in state["cls"] and state["text"].endswith(": first"), state
    assert_focus_visible(page)
    tab_until(page, lambda s: s["text"] == "Reply")
    page.keyboard.press("Enter")
    expect(page.locator("#replying-text")).to_contain_text(": first")
    assert focused(page)["id"] == "composer-input"
    page.keyboard.type("a reply")
    page.keyboard.press("Enter")
    expect(log(page).filter(has_text="a reply").locator(".reply-quote")).to_contain_text("first")

    tab_until(page, lambda s: "msg" in s["cls"], key="Shift+Tab")
    tab_until(page, lambda s: s["text"] == "React with 🎉")
    page.keyboard.press("Enter")
    reaction = log(page).filter(has_text="a reply").locator(".reaction")
    expect(reaction).to_have_text("🎉 1")
    expect(reaction).to_have_attribute("aria-pressed", "true")

    # A direct room, found with the keyboard.
    page.keyboard.press("Escape")
    page.locator("#start-dm summary").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.type("Friend")
    page.keyboard.press("Enter")
    tab_until(page, lambda s: s["text"] == "Message Friend")
    page.keyboard.press("Enter")
    expect(page.locator("#room-title")).to_have_text("Friend")
    expect(page.locator("#composer-input")).to_be_focused()
    page.keyboard.type("hello friend")
    page.keyboard.press("Enter")
    expect(log(page)).to_have_count(1)
    status, rooms = server.api("GET", "/api/rooms", token=friend["token"])
    assert [room["lastMessage"]["content"] for room in rooms["rooms"]] == ["hello friend"]
    assert page.errors == []


def test_a_phone_sized_screen(server, new_page, screenshots):
    page = new_page(server, viewport={"width": 320, "height": 640}, is_mobile=True, has_touch=True)
    page.goto("/")
    assert_no_horizontal_scroll(page)
    register(page, unique("phone"), "Phone")
    assert_no_horizontal_scroll(page)
    create_room(page, "a room with a rather long name that must wrap")
    expect(page.locator("#room-list")).to_be_hidden()
    send(page, "a long line of text without spaces: " + "x" * 120)
    expect(log(page)).to_have_count(1)
    assert_no_horizontal_scroll(page)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(screenshots / f"phone-room-{scheme}.png"))
    page.get_by_role("button", name="Rooms").click()
    expect(page.locator("#room-list")).to_be_visible()
    expect(page.locator("#room-view")).to_be_hidden()
    assert_no_horizontal_scroll(page)
    page.screenshot(path=str(screenshots / "phone-rooms-dark.png"))
    page.locator("#room-list a").first.click()
    expect(page.locator("#room-view")).to_be_visible()


def assert_no_horizontal_scroll(page: Page):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, f"the page is {width} px wide at 320 px"


def serious(results):
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_violation_in_any_view(server, new_page, screenshots):
    axe = Axe()
    page = new_page(server, reduced_motion="reduce")
    found = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.goto("/")
        expect(page.get_by_label("Username")).to_be_visible()
        found[f"sign-in {scheme}"] = serious(axe.run(page))
        page.screenshot(path=str(screenshots / f"sign-in-{scheme}.png"))

    bot = server.register(unique("helper"), "Helper")
    register(page, unique("axe"), "Axe")
    create_room(page, unique("checks"), public=True)
    room_id = page.evaluate("decodeURIComponent(location.hash.slice('#room='.length))")
    token = session_of(page)["token"]
    assert server.api("POST", f"/api/rooms/{room_id}/members", {"userId": bot["user"]["id"]}, token=token)[0] == 200
    send(page, "a message to check")
    expect(log(page)).to_have_count(1)
    message_id = log(page).first.get_attribute("data-id")
    server.api("POST", f"/api/rooms/{room_id}/messages", {"content": "a reply", "replyTo": message_id}, token=bot["token"])
    expect(log(page)).to_have_count(2)
    log(page).first.hover()
    log(page).first.get_by_role("button", name="React with 👍").click()
    expect(log(page).first.locator(".reaction")).to_have_text("👍 1")
    page.get_by_text("Message a person", exact=True).click()
    page.get_by_label("Search people").fill("Helper")
    page.get_by_role("button", name="Search").first.click()
    expect(page.locator("#user-results li")).to_have_count(1)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found[f"room {scheme}"] = serious(axe.run(page))
        page.screenshot(path=str(screenshots / f"chat-{scheme}.png"))

    phone = new_page(server, viewport={"width": 320, "height": 640}, reduced_motion="reduce")
    phone.goto("/")
    phone.get_by_label("Username").fill(session_of(page)["user"]["username"])
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Sign in").click()
    expect(phone.locator("#room-list a")).to_have_count(1)
    for scheme in ("light", "dark"):
        phone.emulate_media(color_scheme=scheme)
        found[f"phone room list {scheme}"] = serious(axe.run(phone))
    assert {view: problems for view, problems in found.items() if problems} == {}

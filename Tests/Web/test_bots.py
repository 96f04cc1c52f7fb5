"""Bots are marked as bots; a message relayed by a bridge shows its sender's name on the other network."""
import re
import subprocess

from playwright.sync_api import expect

from conftest import BINARY, create_room, log, register, send, session_of, unique


def add_bot(server, name, display_name):
    output = subprocess.run([BINARY, "users", "add", name, "--bot", "--display-name", display_name, "--database", str(server.database)],
                            check=True, capture_output=True, text=True).stdout
    user_id = re.search(r"\(id ([^)]+)\)", output).group(1)
    token = re.search(r"^token: (\S+)", output, re.MULTILINE).group(1)
    return user_id, token


def test_bots_are_marked_and_bridged_messages_show_the_nick(server, new_page, screenshots):
    page = new_page(server, viewport={"width": 1000, "height": 600})
    register(page, unique("ana"), "Ana")
    create_room(page, "rust")
    room_id = page.evaluate("decodeURIComponent(location.hash.slice('#room='.length))")
    token = session_of(page)["token"]
    echo_id, echo_token = add_bot(server, unique("echo"), "Release bot")
    bridge_id, bridge_token = add_bot(server, unique("irc-bridge"), "IRC bridge")
    for bot in (echo_id, bridge_id):
        assert server.api("POST", f"/api/rooms/{room_id}/members", {"userId": bot}, token=token)[0] == 200

    send(page, "Has anyone tried the new release?")
    expect(log(page)).to_have_count(1)
    question = log(page).first.get_attribute("data-id")
    server.api("POST", f"/api/rooms/{room_id}/messages", {"content": "v2.1 is out: see the changelog", "replyTo": question}, token=echo_token)
    server.api("POST", f"/api/rooms/{room_id}/messages", {
        "content": "Yes, upgraded this morning: builds are faster",
        "meta": {"bridge": {"network": "irc", "channel": "#rust", "nick": "ferris"}},
    }, token=bridge_token)

    bot_message = log(page).filter(has_text="v2.1 is out: see the changelog")
    expect(bot_message.locator(".badge.bot")).to_have_text("bot")
    bridged = log(page).filter(has_text="Yes, upgraded this morning: builds are faster")
    expect(bridged.locator(".author")).to_have_text("ferris")
    expect(bridged.locator(".badge.bridge")).to_have_text("irc")
    expect(bridged.locator(".badge.bridge")).to_have_attribute("title", re.compile("#rust"))
    expect(bridged.locator(".badge.bot")).to_have_count(0)
    expect(page.locator("#members li .badge.bot")).to_have_count(2)
    expect(page.locator("#room-list a").first.locator(".last")).to_have_text("ferris (via IRC bridge): Yes, upgraded this morning: builds are faster")
    bridged.hover()
    bridged.get_by_role("button", name="React with 🎉").click()
    expect(bridged.locator(".reaction")).to_have_text("🎉 1")
    page.get_by_label("Message", exact=True).fill("Thanks, ferris!")
    page.mouse.move(0, 0)
    page.screenshot(path=str(screenshots / "readme.png"))
    assert page.errors == []

#!/usr/bin/env python3
"""A Switchboard bot in Python, with nothing but the standard library.

The agent runs it as an exec plugin and speaks JSON lines with it: events come in on standard
input, actions go out on standard output, and whatever it prints on standard error lands in the
agent's log. The protocol is described in exec-plugin.schema.json and in the agent's guide.

    !ping         answers "pong" and reacts with a thumbs-up
    !echo TEXT    says TEXT back
    !about        tells its process id and the protocol version

In a direct room the "!" may be left out. Try it without an agent:

    printf '%s\n' '{"type":"hello","version":1,"plugin":"py","bot":{"username":"py"}}' \
      '{"type":"message","roomId":"r1","text":"!ping","message":{"id":"m1"},"direct":false}' | python3 bot.py
"""

import json
import os
import sys

PROTOCOL_VERSION = 1


def write(line):
    """Writes one action; flushing at once matters, or the agent waits for a full buffer."""
    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def log(text):
    print(text, file=sys.stderr, flush=True)


class Bot:
    def __init__(self):
        self.prefix = "!"
        self.next_id = 0

    def action(self, kind, **fields):
        """Sends an action with an id, so that the agent answers it with a result line."""
        self.next_id += 1
        write({"type": kind, "id": str(self.next_id), **fields})

    def on_hello(self, hello):
        if hello.get("version") != PROTOCOL_VERSION:
            log(f"this bot speaks exec protocol {PROTOCOL_VERSION}, the agent {hello.get('version')}")
            sys.exit(2)
        self.prefix = (hello.get("config") or {}).get("prefix", "!")
        write({"type": "hello", "version": PROTOCOL_VERSION, "events": ["message"]})
        log(f"ready as {hello.get('bot', {}).get('username', '?')} (pid {os.getpid()})")

    def on_message(self, event):
        text = event.get("text", "").strip()
        if text.startswith(self.prefix):
            text = text[len(self.prefix):]
        elif not event.get("direct"):
            return
        command, _, rest = text.partition(" ")
        room, message_id = event["roomId"], event["message"]["id"]
        if command == "ping":
            self.action("send", roomId=room, content="pong", replyTo=message_id)
            self.action("react", roomId=room, messageId=message_id, reaction="👍")
        elif command == "echo" and rest.strip():
            self.action("send", roomId=room, content=rest.strip(), replyTo=message_id)
        elif command == "about":
            self.action("send", roomId=room, content=f"python-example: pid {os.getpid()}, exec protocol {PROTOCOL_VERSION}")

    def on_result(self, result):
        if not result.get("ok"):
            error = result.get("error", {})
            log(f"action {result.get('id')} failed: {error.get('code')}: {error.get('message')}")


def main():
    bot = Bot()
    handlers = {"hello": bot.on_hello, "message": bot.on_message, "result": bot.on_result}
    for raw in sys.stdin:
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as error:
            log(f"unreadable line from the agent: {error}")
            continue
        handler = handlers.get(line.get("type"))
        if handler:
            handler(line)
    # The agent closed standard input: it is stopping, so should we.


if __name__ == "__main__":
    main()

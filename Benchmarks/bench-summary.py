#!/usr/bin/env python3
"""The table of one scripts/bench.sh run: python3 Benchmarks/bench-summary.py OUTPUT_DIR (Markdown on standard output)."""
import glob, json, os, re, sys

out = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ms(value):
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def messaging_cpu(report):
    if not report:
        return "did not finish"
    cpu = report["cpu"].get("serverMicrosecondsPerUnit")
    return (f"{cpu:.2f} µs" if cpu is not None else "? µs") + \
        f" (p99 {ms(report['latency']['p99'])} ms; {report['lost']}/{report['duplicates']}; {report['deliveriesPerSecond']:,.0f}/s)"


def irc_cpu(name):
    try:
        text = open(os.path.join(out, name)).read()
    except OSError:
        return None, "did not finish"
    m = re.search(r"delivered (\d+) \(expected (\d+)\) (\d+)/s server [\d.]+s CPU = ([\d.]+) us/delivery; p50 ([\d.na]+) ms p99 ([\d.na]+) ms", text)
    if not m:
        return None, "did not finish"
    delivered, expected, rate, cpu, _, p99 = m.groups()
    return float(cpu), f"{float(cpu):.2f} µs (p99 {p99} ms; {int(expected) - int(delivered)} short of {int(expected):,}; {int(rate):,}/s)"


def per_connection(report):
    if not report or report.get("serverBytesPerConnection") is None:
        return None, "did not finish"
    kb = report["serverBytesPerConnection"] / 1000
    failed = sum(report.get("failures", {}).values())
    return kb, f"{kb:.1f} KB ({report['opened']:,} open{f', {failed} failed' if failed else ''})"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "—"


try:
    print(open(os.path.join(out, "run.txt")).read().strip().replace("\n", "  \n"))
except OSError:
    pass
print()

rounds = sorted({int(m.group(1)) for f in os.listdir(out) for m in [re.match(r"r(\d+)-", f)] if m})
if rounds:
    print("| side by side | Switchboard | Node `ws` | InspIRCd | Switchboard ÷ Node |")
    print("|---|---|---|---|---|")
    for r in rounds:
        sb, node = load(f"r{r}-cpu-switchboard.json"), load(f"r{r}-cpu-node.json")
        if sb or node:
            irc_value, irc_text = irc_cpu(f"r{r}-cpu-inspircd.txt")
            if not os.path.exists(os.path.join(out, f"r{r}-cpu-inspircd.txt")):
                irc_text = "—"
            sb_value = sb and sb["cpu"].get("serverMicrosecondsPerUnit")
            node_value = node and node["cpu"].get("serverMicrosecondsPerUnit")
            load_avg = (sb or node)["machine"].get("loadAverage", "")
            print(f"| round {r}: CPU per delivery (p99; lost/doubled; deliveries) — load {load_avg} | {messaging_cpu(sb)} | "
                  f"{messaging_cpu(node) if node else '—'} | {irc_text} | {ratio(sb_value, node_value)} |")
        sbm, nodem = load(f"r{r}-memory-switchboard.json"), load(f"r{r}-memory-node.json")
        if sbm or nodem:
            sb_kb, sb_text = per_connection(sbm)
            node_kb, node_text = per_connection(nodem) if nodem else (None, "—")
            print(f"| round {r}: server memory per idle connection | {sb_text} | {node_text} | — | {ratio(sb_kb, node_kb)} |")
    print()

databases = [d for d in ("sqlite", "postgres") if glob.glob(os.path.join(out, f"*-{d}.json"))]
if databases:
    print("| Switchboard only | " + " | ".join({"sqlite": "SQLite", "postgres": "PostgreSQL"}[d] for d in databases) + " |")
    print("|---|" + "---|" * len(databases))
    rows = {}

    def row(title, values):
        print(f"| {title} | " + " | ".join(values) + " |")

    ceiling = [load(f"ceiling-{d}.json") for d in databases]
    if any(ceiling):
        row("fan-out ceiling, open loop: deliveries/s, p99, lost/doubled, µs per delivery", [
            f"{c['deliveriesPerSecond']:,.0f}/s of {c['configuration']['rate'] * c['membersPerRoom']:,.0f}, p99 {ms(c['latency']['p99'])} ms, "
            f"{c['lost']}/{c['duplicates']}, {c['cpu'].get('serverMicrosecondsPerUnit') or 0:.2f} µs" if c else "did not finish" for c in ceiling])
    writes = [load(f"writes-{d}.json") for d in databases]
    if any(writes):
        row("durable writes: acked messages/s, ack p50 / p99, µs per message", [
            f"{w['ackedPerSecond']:,.0f}/s, {ms(w['ackLatency']['p50'])} / {ms(w['ackLatency']['p99'])} ms, "
            f"{w.get('serverMicrosecondsPerMessage') or 0:.0f} µs ({w['configuration']['senders']} senders; generator "
            f"{w['cpu'].get('generatorMicrosecondsPerUnit') or 0:.0f} µs)" if w else "did not finish" for w in writes])
    node_writes = load("writes-node.json")
    if node_writes:
        w = node_writes
        row("… the same writes against the Node peer (stores nothing; this machine's ceiling)", [
            f"{w['ackedPerSecond']:,.0f}/s, {ms(w['ackLatency']['p50'])} / {ms(w['ackLatency']['p99'])} ms, "
            f"{w['cpu'].get('serverMicrosecondsPerUnit') or 0:.0f} µs; generator {w['cpu'].get('generatorMicrosecondsPerUnit') or 0:.0f} µs"] + ["—"] * (len(databases) - 1))
    replays = [load(f"replay-{d}.json") for d in databases]
    if any(replays):
        row("rejoin replaying K messages: p50 / p99", [
            f"K = {r['replayedPerJoin']:,}: {ms(r['rejoin']['p50'])} / {ms(r['rejoin']['p99'])} ms" if r else "did not finish" for r in replays])
    histories = [load(f"history-{d}.json") for d in databases]
    if any(histories):
        h0 = next(h for h in histories if h)
        row(f"{h0['messages']:,} messages ({h0['rooms']} rooms × {h0['messagesPerRoom']:,}): start to /healthz (3 starts)", [
            ", ".join(f"{s:.0f}" for s in h["startMs"]) + " ms" if h else "did not finish" for h in histories])
        row("… `GET /api/rooms`, every room unread: p50 / p99", [
            f"{ms(h['roomsMs']['p50'])} / {ms(h['roomsMs']['p99'])} ms (unread {', '.join(f'{u:,}' for u in h['unreadSeen'])})" if h else "—" for h in histories])
        row("… a history page of 50 in the middle: p50 / p99", [
            f"{ms(h['historyPageMs']['p50'])} / {ms(h['historyPageMs']['p99'])} ms" if h else "—" for h in histories])
        row("… a rejoin replaying 1,000: p50 / p99", [
            f"{ms(h['replayMs']['p50'])} / {ms(h['replayMs']['p99'])} ms" if h else "—" for h in histories])
        row("… (making it: `switchboard import` of the messages)", [f"{h['importSeconds']:.0f} s" if h else "—" for h in histories])

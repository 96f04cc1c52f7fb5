import Foundation
import SwitchboardProtocol

/// The forms `switchboard archive export` writes a room in, each written piece by piece (a header,
/// one piece per message, a footer), so that a room of any size is exported in bounded memory.
public enum ExportFormat: String, Sendable, CaseIterable {
    /// One JSON object per line (``ArchivedMessage``'s fields).
    case jsonl
    /// One HTML file readable on its own: styles and a tiny script inline, every time shown in the
    /// reader's time zone (UTC when scripts are off), all content escaped.
    case html
    /// Plain text, one line per message, times in UTC.
    case txt

    /// What comes before the messages.
    public func header(roomName: String, roomId: String) -> String {
        switch self {
        case .jsonl: ""
        case .txt: "# \(roomName) (\(roomId))\n"
        case .html:
            """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(Self.escapeHTML(roomName)) · Switchboard archive</title>
            <style>
            body { font: 15px/1.45 system-ui, sans-serif; max-width: 50rem; margin: 1rem auto; padding: 0 1rem; color: #1b1b1b; background: #fff; }
            @media (prefers-color-scheme: dark) { body { color: #e8e8e8; background: #161616; } .meta { color: #a0a0a0; } }
            article { padding: .35rem 0; border-bottom: 1px solid #8883; }
            .meta { color: #5a5a5a; font-size: .85em; }
            .content { white-space: pre-wrap; overflow-wrap: anywhere; margin: .15rem 0 0; }
            .deleted { font-style: italic; }
            </style>
            </head>
            <body>
            <h1>\(Self.escapeHTML(roomName))</h1>
            <p class="meta">Room <code>\(Self.escapeHTML(roomId))</code>, exported from the Switchboard archive. Times are in your time zone.</p>
            <main>

            """
        }
    }

    /// One message.
    public func entry(_ message: ArchivedMessage) -> String {
        let time = Self.iso8601(message.createdAt)
        let bridge = Self.bridgeNick(message.meta)
        switch self {
        case .jsonl:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            // `meta` may hold DEL, C1 and bidirectional controls, which JSON leaves raw: escaped, so
            // that an export shown in a terminal cannot act on it.
            return TerminalText.printableJSON(String(decoding: (try? encoder.encode(message)) ?? Data("{}".utf8), as: UTF8.self)) + "\n"
        case .txt:
            let author = bridge.map { "\($0) (via \(message.username))" } ?? message.username
            let content = message.deleted ? "(deleted)" : TerminalText.printable(message.content, indentingLines: true)
            return "[\(time)] #\(message.seq) <\(author)> \(content)\(message.editedAt == nil ? "" : " (edited)")\n"
        case .html:
            let author = Self.escapeHTML(bridge ?? message.displayName) + (bridge == nil ? "" : " <span class=\"via\">via \(Self.escapeHTML(message.username))</span>")
            let content = message.deleted ? "<p class=\"content deleted\">(deleted)</p>" : "<p class=\"content\">\(Self.escapeHTML(message.content))</p>"
            return """
                <article id="m\(message.seq)"><div class="meta"><strong>\(author)</strong> · <time datetime="\(time)">\(time)</time>\(message.editedAt == nil ? "" : " · edited")</div>\(content)</article>

                """
        }
    }

    /// What comes after the messages.
    public var footer: String {
        switch self {
        case .jsonl, .txt: ""
        case .html:
            // The only script: shows each <time> in the reader's zone and language.
            """
            </main>
            <script>
            for (const t of document.querySelectorAll("time[datetime]")) { const d = new Date(t.dateTime); if (!isNaN(d)) { t.textContent = d.toLocaleString(); t.title = t.dateTime; } }
            </script>
            </body>
            </html>

            """
        }
    }

    /// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
    public static func escapeHTML(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// `2026-11-30T19:40:00.123Z`.
    static func iso8601(_ milliseconds: Int) -> String {
        // Whole seconds formatted, milliseconds appended: a Double of the whole time would round them.
        let (seconds, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        let whole = Date(timeIntervalSince1970: Double(seconds)).formatted(.iso8601).dropLast()
        return "\(whole).\(String(fraction + 1000).dropFirst())Z"
    }

    /// The nick a bridged message was written under (`meta.bridge.nick`), if any.
    static func bridgeNick(_ meta: String?) -> String? {
        guard let meta, let object = try? JSONSerialization.jsonObject(with: Data(meta.utf8)) as? [String: Any],
            let bridge = object["bridge"] as? [String: Any], let nick = bridge["nick"] as? String
        else { return nil }
        // Any member may set `meta`: its text goes to terminals (txt) and pages (html) without
        // control or bidirectional formatting characters.
        let clean = { (text: String) in String(String.UnicodeScalarView(text.unicodeScalars.filter { !TerminalText.isControl($0) })) }
        if let network = bridge["network"] as? String { return "\(clean(nick))@\(clean(network))" }
        return clean(nick)
    }
}

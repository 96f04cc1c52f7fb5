/// Text from a server made safe to print to a terminal: the protocol says a client never prints a
/// control character it received raw (a colour, a cursor move, a window title, a bell, text
/// reversed by a bidirectional override would act instead of showing).
///
/// ```swift
/// print(TerminalText.printable(message.content, indentingLines: true))
/// ```
public enum TerminalText {
    /// `text` with every control character shown as `\u{…}`; tabs and line feeds are kept. With
    /// `indentingLines`, for a message someone wrote, each line feed starts an indented line, so
    /// that a message of several lines cannot pass a line of its own for another speaker's.
    public static func printable(_ text: String, indentingLines: Bool = false) -> String {
        var result = ""
        result.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            if scalar == "\n", indentingLines {
                result += "\n    "
            } else if scalar == "\n" || scalar == "\t" || !isControl(scalar) {
                result.unicodeScalars.append(scalar)
            } else {
                result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return result
    }

    /// JSON text with the control characters that JSON leaves as they are (DEL, C1 controls,
    /// bidirectional formatting) written as `\uXXXX` escapes, which a JSON reader reads back as
    /// the same text.
    public static func printableJSON(_ json: String) -> String {
        var result = ""
        for scalar in json.unicodeScalars {
            if isControl(scalar) {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// C0 and C1 controls, DEL, and the bidirectional formatting characters (embeddings,
    /// overrides, isolates, marks).
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x200E, 0x200F, 0x061C, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}

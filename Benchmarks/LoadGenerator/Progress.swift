#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The progress line on standard error: rewritten in place on a terminal, one line a second otherwise.
final class Progress: Sendable {
    let enabled: Bool
    private let isTerminal: Bool
    private let pending = Mutex(false)

    init(enabled: Bool) {
        self.enabled = enabled
        self.isTerminal = isatty(2) != 0
    }

    /// Replaces the progress line.
    func update(_ line: String) {
        guard enabled else { return }
        if isTerminal {
            pending.withLock { $0 = true }
            Self.write("\r\u{1B}[K" + line)
        } else {
            Self.write(line + "\n")
        }
    }

    /// Prints a line that stays.
    func note(_ line: String) {
        guard enabled else { return }
        let wasPending = pending.withLock { state in
            defer { state = false }
            return state
        }
        Self.write((wasPending ? "\r\u{1B}[K" : "") + line + "\n")
    }

    /// Ends the progress line.
    func finish() {
        let wasPending = pending.withLock { state in
            defer { state = false }
            return state
        }
        if wasPending { Self.write("\r\u{1B}[K") }
    }

    static func write(_ text: String, to fd: Int32 = 2) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = posixWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

#if canImport(Glibc)
private let posixWrite = Glibc.write
#elseif canImport(Musl)
private let posixWrite = Musl.write
#elseif canImport(Darwin)
private let posixWrite = Darwin.write
#endif

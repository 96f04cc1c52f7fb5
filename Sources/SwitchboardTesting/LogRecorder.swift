import Logging
import Synchronization

/// Keeps every log line, so that a test can wait for one.
public final class LogRecorder: Sendable {
    private let lines = Mutex<[String]>([])

    /// An empty recorder.
    public init() {}

    /// A logger that records into this recorder (and prints nothing).
    public func logger(_ label: String = "test") -> Logger {
        var logger = Logger(label: label) { _ in RecordingHandler(recorder: self) }
        logger.logLevel = .debug
        return logger
    }

    /// Adds a line.
    public func record(_ line: String) { lines.withLock { $0.append(line) } }

    /// Every line so far.
    public var all: [String] { lines.withLock { $0 } }

    /// Waits for a line that contains `text`.
    public func waitFor(_ text: String, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !all.contains(where: { $0.contains(text) }) {
            guard ContinuousClock.now < deadline else {
                throw TestFailure("no log line with \"\(text)\"; lines: \(all.suffix(20))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Formats each event as a line: level, message, then the metadata sorted by key.
struct RecordingHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        recorder.record("\(event.level) \(event.message) \(all.map { "\($0)=\($1)" }.sorted().joined(separator: " "))")
    }
}

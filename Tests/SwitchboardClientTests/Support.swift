import Foundation
import Logging
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Synchronization

/// A client configuration for tests: short backoff, a quick heartbeat, short timeouts.
func testConfiguration(_ server: String, token: String, _ adjust: (inout ClientConfiguration) -> Void = { _ in }) -> ClientConfiguration {
    var configuration = ClientConfiguration(server: server, credentials: .token(token))
    configuration.backoff.initialDelay = .milliseconds(50)
    configuration.backoff.maxDelay = .milliseconds(400)
    configuration.heartbeat.interval = .seconds(5)
    configuration.heartbeat.timeout = .seconds(5)
    configuration.connectTimeout = .seconds(3)
    configuration.requestTimeout = .seconds(10)
    configuration.shutdownFlushTimeout = .seconds(5)
    configuration.fallback.retryWebSocketEvery = .seconds(60)
    configuration.fallback.pollTimeout = .seconds(5)
    adjust(&configuration)
    return configuration
}

/// A logger for clients in tests: quiet unless `LOG_LEVEL` says otherwise.
func testLogger(_ label: String) -> Logger {
    if let folder = ProcessInfo.processInfo.environment["CLIENT_TEST_LOGS"] {
        var logger = Logger(label: label) { label in FileLogHandler(path: "\(folder)/\(label).log") }
        logger.logLevel = .trace
        return logger
    }
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}

/// Appends log lines to a file: `CLIENT_TEST_LOGS=/tmp/logs` keeps each client's log of a test run.
struct FileLogHandler: LogHandler {
    let path: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
        let text = "\(ContinuousClock.now) \(event.level) \(event.message) \(all.map { "\($0)=\($1)" }.sorted().joined(separator: " "))\n"
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(Data(text.utf8))
        try? handle.close()
    }
}

extension ChatClient {
    /// Waits for a status that matches.
    @discardableResult
    func waitForStatus(timeout: Duration = .seconds(20), _ match: @escaping @Sendable (ConnectionStatus) -> Bool) async throws -> ConnectionStatus {
        let updates = statusUpdates()
        let found = try await withTimeout(timeout) { await updates.first(where: match) }
        guard let found else { throw TestFailure("the client stopped before the status came; last: \(status)") }
        return found
    }
}

/// Takes elements from a stream until `done` says the collection is complete.
func collect<Element: Sendable>(
    _ stream: AsyncStream<Element>, timeout: Duration = .seconds(30), until done: @escaping @Sendable ([Element]) -> Bool
) async throws -> [Element] {
    let collected = Locked<[Element]>([])
    do {
        return try await withTimeout(timeout) {
            var all: [Element] = []
            if done(all) { return all }
            for await element in stream {
                all.append(element)
                collected.set(all)
                if done(all) { return all }
            }
            throw TestFailure("the stream ended after \(all.count) elements")
        }
    } catch {
        throw TestFailure("\(error); collected \(collected.get().count) elements")
    }
}

/// Takes `count` elements from a stream.
func collect<Element: Sendable>(_ stream: AsyncStream<Element>, count: Int, timeout: Duration = .seconds(30)) async throws -> [Element] {
    try await collect(stream, timeout: timeout) { $0.count >= count }
}

/// A value shared between a test and callbacks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func get() -> Value { mutex.withLock { $0 } }
    func set(_ value: Value) { mutex.withLock { $0 = value } }
    func update(_ body: (inout Value) -> Void) { mutex.withLock { body(&$0) } }
}

/// Checks that messages are exactly `1...n` of a room, each once, in order.
func expectContiguous(_ messages: [Message], from first: Int = 1) throws {
    let seqs = messages.map(\.seq)
    guard seqs == Array(first..<(first + seqs.count)) else {
        throw TestFailure("seqs are not contiguous from \(first): \(seqs)")
    }
}

/// Takes every element of a stream until it ends.
func collectAll<Element: Sendable>(_ stream: AsyncStream<Element>, timeout: Duration = .seconds(30)) async throws -> [Element] {
    try await withTimeout(timeout) {
        var all: [Element] = []
        for await element in stream { all.append(element) }
        return all
    }
}

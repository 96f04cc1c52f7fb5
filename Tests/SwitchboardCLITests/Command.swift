import Foundation
import Spawn
import SwitchboardTesting
import Synchronization

/// The built `switchboard` binary, run as a child process, with what it prints collected.
///
/// Output is read as it comes (tests wait for lines, not for time), standard input stays open for
/// ``type(_:)``, and the process is killed if the test ends first.
final class Command: Sendable {
    /// The binary, next to the test bundle: `swift test` builds every product of the package.
    static let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("switchboard").path

    private let process: ChildProcess
    private let input: Pipe
    private let collected = Box()
    private let changes: AsyncStream<Void>
    private let changed: AsyncStream<Void>.Continuation

    /// Shared with the pipes' handlers.
    private final class Box: Sendable {
        private let state = Mutex(Collected())
        func withLock<Value>(_ body: (inout Collected) -> Value) -> Value { state.withLock { body(&$0) } }
    }

    private struct Collected {
        var output = ""
        var errors = ""
        var exited: ChildProcess.Termination?
        var outputEnded = false
        var errorsEnded = false
        /// The process ended and everything it printed has been read.
        var finished: Bool { exited != nil && outputEnded && errorsEnded }
    }

    /// Starts `switchboard ARGUMENTS`.
    init(_ arguments: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure("no switchboard binary at \(Self.binary): build the package (swift build) before testing")
        }
        (changes, changed) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        var environment = ProcessInfo.processInfo.environment
        for key in ["SWITCHBOARD_SERVER", "SWITCHBOARD_USER", "SWITCHBOARD_TOKEN", "SWITCHBOARD_PASSWORD", "LOG_LEVEL", "DEBUG"] {
            environment[key] = nil
        }
        input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        // Not Foundation's Process: its run() crashes now and then on Linux (see ChildProcess).
        process = try ChildProcess.spawn(
            Self.binary, arguments: arguments, environment: environment,
            standardInput: input.fileHandleForReading.fileDescriptor,
            standardOutput: output.fileHandleForWriting.fileDescriptor,
            standardError: errors.fileHandleForWriting.fileDescriptor
        )
        // The child has its own copies: without closing these, the reads below would never end.
        try input.fileHandleForReading.close()
        try output.fileHandleForWriting.close()
        try errors.fileHandleForWriting.close()
        // A thread per pipe with blocking reads: Foundation's readabilityHandler is not dependable on Linux.
        Self.drain(output.fileHandleForReading, into: collected, changed: changed) { $0.output += $1; if $2 { $0.outputEnded = true } }
        Self.drain(errors.fileHandleForReading, into: collected, changed: changed) { $0.errors += $1; if $2 { $0.errorsEnded = true } }
        Task { [process, collected, changed] in
            let termination = await process.termination()
            collected.withLock { $0.exited = termination }
            changed.yield()
        }
    }

    /// Reads `handle` until its end on a thread of its own, handing each piece (and the end) to `append`.
    private static func drain(
        _ handle: FileHandle, into collected: Box, changed: AsyncStream<Void>.Continuation,
        _ append: @escaping @Sendable (inout Collected, String, Bool) -> Void
    ) {
        let thread = Thread {
            while true {
                let data = handle.availableData
                collected.withLock { append(&$0, String(decoding: data, as: UTF8.self), data.isEmpty) }
                changed.yield()
                if data.isEmpty { return }
            }
        }
        thread.start()
    }

    deinit {
        process.send(SIGTERM)
    }

    /// What it printed on standard output so far.
    var printed: String { collected.withLock { $0.output } }

    /// Writes to its standard input, as a person typing.
    func type(_ text: String) {
        input.fileHandleForWriting.write(Data(text.utf8))
    }

    /// Waits until the lines printed so far satisfy `done`, and returns them.
    func lines(timeout: Duration = .seconds(20), until done: @escaping @Sendable ([String]) -> Bool) async throws -> [String] {
        try await lines(of: \.output, timeout: timeout, "the expected output", until: done)
    }

    /// Waits until the lines printed so far on standard error (the server's log) satisfy `done`,
    /// and returns them.
    func errorLines(timeout: Duration = .seconds(20), until done: @escaping @Sendable ([String]) -> Bool) async throws -> [String] {
        try await lines(of: \.errors, timeout: timeout, "the expected log lines", until: done)
    }

    private func lines(
        of text: KeyPath<Collected, String> & Sendable, timeout: Duration, _ what: String, until done: @escaping @Sendable ([String]) -> Bool
    ) async throws -> [String] {
        try await waitFor(timeout: timeout, what) { collected in
            let lines = collected[keyPath: text].split(separator: "\n").map(String.init)
            return done(lines) ? lines : nil
        }
    }

    /// Waits for `count` lines of output.
    func lines(count: Int) async throws -> [String] {
        try await lines { $0.count >= count }
    }

    /// Waits for the process to end and its output to be read, and returns its exit status.
    func exitStatus(timeout: Duration = .seconds(20)) async throws -> Int32 {
        switch try await waitFor(timeout: timeout, "the command to end", { $0.finished ? $0.exited : nil }) {
        case .exited(let status), .signalled(let status): return status
        }
    }

    /// Ends the process (SIGTERM).
    func stop() {
        process.send(SIGTERM)
    }

    /// Kills the process at once (SIGKILL), as a crash would: it cleans nothing up.
    func kill() {
        process.send(SIGKILL)
    }

    private func waitFor<Value: Sendable>(
        timeout: Duration, _ what: String, _ found: @escaping @Sendable (Collected) -> Value?
    ) async throws -> Value {
        let value = try await withTimeout(timeout) { [collected, changes] () -> Value? in
            if let value = collected.withLock({ found($0) }) { return value }
            for await _ in changes {
                if let value = collected.withLock({ found($0) }) { return value }
            }
            return nil
        }
        guard let value else {
            let (output, errors) = collected.withLock { ($0.output, $0.errors) }
            throw TestFailure("waited for \(what) in vain; printed:\n\(output)\nerrors:\n\(errors)")
        }
        return value
    }

    /// Runs `switchboard ARGUMENTS` to its end, with `input` on standard input.
    static func run(_ arguments: [String], input: String = "") async throws -> (status: Int32, output: String, errors: String) {
        let command = try Command(arguments)
        command.type(input)
        try command.input.fileHandleForWriting.close()
        let status = try await command.exitStatus()
        let (output, errors) = command.collected.withLock { ($0.output, $0.errors) }
        return (status, output, errors)
    }
}

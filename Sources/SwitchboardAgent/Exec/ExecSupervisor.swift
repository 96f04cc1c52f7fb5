import Logging
import NIOCore
import Synchronization

/// Runs an exec plugin's program and keeps it running: starts it, greets it, hands it events,
/// carries out its actions, logs what it writes on standard error, and starts it again with
/// growing waits when it ends.
///
/// ```swift
/// let supervisor = ExecSupervisor(configuration: configuration)
/// supervisor.deliver(.message(message, sender: nil, text: message.content, mentioned: false, direct: false))
/// await supervisor.run(hello: .hello(plugin: "pybot", bot: bot, config: configuration.config), logger: logger) { request in
///     // carry out `request` (send, react, typing) and say how it went
/// }
/// ```
public final class ExecSupervisor: Sendable {
    /// What the supervisor did so far, for tests and health.
    public struct Status: Sendable, Hashable {
        /// The running program's process id; `nil` between runs.
        public var processId: Int32?
        /// Whether the running program answered the `hello`.
        public var greeted = false
        /// How many times a program was started.
        public var starts = 0
        /// Events dropped because the queue was full.
        public var droppedEvents = 0
        /// How the last program ended.
        public var lastExit: String?
    }

    /// The configuration.
    public let configuration: ExecConfiguration
    private let queue: BoundedQueue<ExecLine>
    private let state = Mutex(Status())
    /// The logger `run` was given; events dropped before it are counted, not logged.
    private let runLogger = Mutex<Logger?>(nil)

    /// A supervisor of `configuration`'s program.
    public init(configuration: ExecConfiguration) {
        self.configuration = configuration
        self.queue = BoundedQueue(limit: configuration.queueLimit)
    }

    private var logger: Logger { runLogger.withLock { $0 } ?? Logger(label: "switchboard.exec", factory: { _ in SwiftLogNoOpLogHandler() }) }

    /// What the supervisor did so far.
    public var status: Status { state.withLock { $0 } }

    /// Queues an event for the program. Never waits: when the queue is full (the program is slow
    /// or restarting), the event is dropped and logged. Returns whether it was queued.
    @discardableResult
    public func deliver(_ event: ExecLine) -> Bool {
        if queue.push(event) { return true }
        let dropped = state.withLock { status in
            status.droppedEvents += 1
            return status.droppedEvents
        }
        runLogger.withLock { $0 }?.info(
            "exec plugin event dropped: the program is slow or restarting and \(queue.limit) events wait already (raise queueLimit to hold more)",
            metadata: ["exec.event": "\(event.type)", "exec.dropped": "\(dropped)"]
        )
        return false
    }

    /// Runs the program until the task is cancelled, starting it again whenever it ends.
    ///
    /// - Parameters:
    ///   - hello: the agent's first line to each program.
    ///   - logger: where the program's standard error, its `log` actions and its restarts go.
    ///   - perform: carries out an action of the program; its outcome is written back when the
    ///     action carried an `id`.
    public func run(hello: ExecLine, logger: Logger, perform: @escaping @Sendable (ExecRequest) async -> ExecOutcome) async {
        runLogger.withLock { $0 = logger }
        var schedule = RestartSchedule(backoff: configuration.backoff)
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let ending: String
            do {
                let exit = try await ExecProcess.run(
                    command: configuration.command, environment: configuration.environment,
                    workingDirectory: configuration.workingDirectory, stopTimeout: .seconds(configuration.stopTimeout)
                ) { pipes in
                    try await converse(over: pipes, hello: hello, perform: perform)
                }
                ending = "the program \(exit)"
            } catch {
                ending = "the program failed: \(error)"
            }
            state.withLock { status in
                status.processId = nil
                status.greeted = false
                status.lastExit = ending
            }
            if Task.isCancelled { break }
            let delay = schedule.ended(after: ContinuousClock.now - started)
            logger.info(
                "\(ending); starting it again in \(delay)",
                metadata: ["exec.command": "\(configuration.command.joined(separator: " "))", "exec.attempt": "\(schedule.attempt)"]
            )
            try? await Task.sleep(for: delay)
        }
        logger.debug("exec plugin stopped")
    }

    /// One program's life: the handshake, then events in and actions out until its output ends.
    private func converse(
        over pipes: ExecProcess.Pipes, hello: ExecLine, perform: @escaping @Sendable (ExecRequest) async -> ExecOutcome
    ) async throws {
        state.withLock { status in
            status.processId = pipes.processId
            status.starts += 1
        }
        logger.info("exec plugin program started", metadata: ["exec.pid": "\(pipes.processId)"])
        let writer = LineWriter(output: pipes.standardInput)
        try await writer.write(hello)
        let (greetings, greeted) = AsyncStream.makeStream(of: ExecHello.self)
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                try await self.logStandardError(pipes.standardError)
                return false
            }
            tasks.addTask { [helloTimeout = configuration.helloTimeout] in
                try await Task.sleep(for: .seconds(helloTimeout))
                guard self.status.greeted else {
                    throw ExecError(code: .handshake, message: "the program did not answer the agent's hello within \(helloTimeout) s; it must write {\"type\":\"hello\",\"version\":\(ExecProtocol.version)} on its standard output")
                }
                return false
            }
            tasks.addTask {
                for await wanted in greetings {
                    try await self.forwardEvents(to: writer, wanted: wanted)
                }
                return false
            }
            tasks.addTask {
                try await self.readActions(pipes.standardOutput, writer: writer, greeted: greeted, perform: perform)
                return true
            }
            // The conversation lasts as long as the program's output; the other tasks follow it.
            for try await outputEnded in tasks where outputEnded { break }
            tasks.cancelAll()
        }
    }

    private func logStandardError(_ standardError: NIOAsyncChannelInboundStream<ByteBuffer>) async throws {
        var framer = LineFramer(maxLineBytes: configuration.maxLineBytes)
        for try await chunk in standardError {
            for case .line(let line) in framer.append(chunk.readableBytesView) {
                logger.info("\(String(decoding: line, as: UTF8.self))", metadata: ["exec.stream": "stderr"])
            }
        }
    }

    private func readActions(
        _ standardOutput: NIOAsyncChannelInboundStream<ByteBuffer>, writer: LineWriter,
        greeted: AsyncStream<ExecHello>.Continuation, perform: @escaping @Sendable (ExecRequest) async -> ExecOutcome
    ) async throws {
        defer { greeted.finish() }
        var framer = LineFramer(maxLineBytes: configuration.maxLineBytes)
        var programHello: ExecHello?
        for try await chunk in standardOutput {
            for piece in framer.append(chunk.readableBytesView) {
                guard case .line(let line) = piece else {
                    logger.info("exec plugin line dropped: over maxLineBytes (\(configuration.maxLineBytes))")
                    continue
                }
                if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
                let request: ExecRequest
                do {
                    request = try ExecRequest.parse(line)
                } catch {
                    logger.info(
                        "exec plugin line ignored: \(error.message)",
                        metadata: ["exec.line": "\(String(decoding: line.prefix(200), as: UTF8.self))"]
                    )
                    if let id = error.id { try await writer.write(.result(id: id, .failure(code: "invalid", message: error.message))) }
                    continue
                }
                guard programHello != nil else {
                    let hello = try handshake(request)
                    programHello = hello
                    state.withLock { $0.greeted = true }
                    greeted.yield(hello)
                    continue
                }
                switch request {
                case .hello:
                    logger.info("exec plugin sent a second hello; ignored")
                case .log(let level, let message):
                    logger.log(level: Logger.Level(rawValue: level) ?? .info, "\(message)", metadata: ["exec.stream": "log"])
                default:
                    let outcome = await perform(request)
                    if case .failure(let code, let message) = outcome {
                        logger.info("exec plugin action failed: \(message)", metadata: ["exec.code": "\(code)"])
                    }
                    if let id = request.id { try await writer.write(.result(id: id, outcome)) }
                }
            }
        }
    }

    private func handshake(_ request: ExecRequest) throws -> ExecHello {
        guard case .hello(let hello) = request else {
            throw ExecError(code: .handshake, message: "the program's first line must be its hello, {\"type\":\"hello\",\"version\":\(ExecProtocol.version)}")
        }
        guard hello.version == ExecProtocol.version else {
            throw ExecError(
                code: .handshake,
                message: "the program speaks version \(hello.version) of the exec protocol and this agent speaks \(ExecProtocol.version); update the one that is behind"
            )
        }
        logger.info("exec plugin program ready", metadata: ["exec.events": "\(hello.events?.sorted() ?? ["all"])"])
        return hello
    }

    private func forwardEvents(to writer: LineWriter, wanted: ExecHello) async throws {
        while let event = await queue.pop() {
            guard wanted.wants(event.type) else { continue }
            try await writer.write(event)
        }
    }
}

/// Writes lines to a program's standard input.
private struct LineWriter: Sendable {
    let output: NIOAsyncChannelOutboundWriter<ByteBuffer>

    func write(_ line: ExecLine) async throws {
        var bytes = try line.encoded()
        bytes.append(UInt8(ascii: "\n"))
        try await output.write(ByteBuffer(bytes: bytes))
    }
}

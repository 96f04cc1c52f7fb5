import Foundation
import NIOCore
import NIOPosix
import Spawn

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A program started with pipes on its standard input, output and error, read and written through
/// SwiftNIO so that no thread blocks on them.
struct ExecProcess {
    /// How the program ended.
    enum Exit: Sendable, Hashable, CustomStringConvertible {
        case status(Int32)
        case signal(Int32)

        var description: String {
            switch self {
            case .status(let code): "exited with status \(code)"
            case .signal(let signal): "was killed by signal \(signal)"
            }
        }
    }

    /// The pipes of a running program.
    struct Pipes {
        let processId: Int32
        let standardOutput: NIOAsyncChannelInboundStream<ByteBuffer>
        let standardError: NIOAsyncChannelInboundStream<ByteBuffer>
        let standardInput: NIOAsyncChannelOutboundWriter<ByteBuffer>
    }

    /// Starts `command` (a program found on `PATH` unless it holds a `/`, then its arguments), runs
    /// `body` with its pipes, then stops it: standard input is closed, then `SIGTERM`, then `SIGKILL`
    /// after `stopTimeout` if it is still running. Returns when the program has ended.
    ///
    /// - Throws: ``ExecError`` when the program cannot be found or started; what `body` throws.
    static func run(
        command: [String], environment: [String: String], workingDirectory: String?, stopTimeout: Duration,
        body: (Pipes) async throws -> Void
    ) async throws -> Exit {
        guard let program = command.first else {
            throw ExecError(code: .invalidConfiguration, message: "`command` is empty; give the program and its arguments, e.g. [python3, bot.py]")
        }
        let executable = try findExecutable(program, environment: environment)
        let input = try PipeDescriptors()
        let output: PipeDescriptors
        let error: PipeDescriptors
        do {
            output = try PipeDescriptors()
            do { error = try PipeDescriptors() } catch {
                output.closeBoth()
                throw error
            }
        } catch {
            input.closeBoth()
            throw error
        }
        let process: ChildProcess
        do {
            process = try ChildProcess.spawn(
                executable, arguments: Array(command.dropFirst()),
                environment: ProcessInfo.processInfo.environment.merging(environment) { _, configured in configured },
                workingDirectory: workingDirectory,
                standardInput: input.read, standardOutput: output.write, standardError: error.write
            )
        } catch let failure {
            for pipe in [input, output, error] { pipe.closeBoth() }
            throw ExecError(code: .cannotStart, message: "cannot start \(executable): \(failure)")
        }
        // The child has its own copies now; the parent keeps only its ends.
        close(input.read)
        close(output.write)
        close(error.write)

        let processId = process.id
        do {
            let group = MultiThreadedEventLoopGroup.singleton
            let standardInput = try await wrap(NIOPipeBootstrap(group: group), output: input.write)
            let standardOutput = try await wrap(NIOPipeBootstrap(group: group), input: output.read)
            let standardError = try await wrap(NIOPipeBootstrap(group: group), input: error.read)
            try await standardInput.executeThenClose { _, writer in
                try await standardOutput.executeThenClose { stdout, _ in
                    try await standardError.executeThenClose { stderr, _ in
                        try await body(Pipes(processId: processId, standardOutput: stdout, standardError: stderr, standardInput: writer))
                    }
                }
            }
        } catch {
            // A program that dies makes its pipes fail: say how it ended rather than how a pipe did.
            if error is ChannelError || error is IOError, await waitForExit(process, upTo: .milliseconds(500)) {
                return await exit(of: process)
            }
            await stopOutsideCancellation(process, timeout: stopTimeout)
            throw error
        }
        await stopOutsideCancellation(process, timeout: stopTimeout)
        return await exit(of: process)
    }

    private static func exit(of process: ChildProcess) async -> Exit {
        switch await process.termination() {
        case .exited(let status): .status(status)
        case .signalled(let signal): .signal(signal)
        }
    }

    /// Stops the program even when the calling task is cancelled (at shutdown): a program is never
    /// left behind.
    private static func stopOutsideCancellation(_ process: ChildProcess, timeout: Duration) async {
        await Task { await stop(process, timeout: timeout) }.value
    }

    /// Stops a program whose standard input is closed: a moment to leave by itself, then `SIGTERM`,
    /// then `SIGKILL` after `timeout`. The signals go to its process group (it has its own), so
    /// that what it started (`sh -c "… && node bot.js"`) stops with it and is not left running.
    private static func stop(_ process: ChildProcess, timeout: Duration) async {
        if await waitForExit(process, upTo: .milliseconds(200)) { return }
        process.send(SIGTERM, toGroup: true)
        if await waitForExit(process, upTo: timeout) { return }
        process.send(SIGKILL, toGroup: true)
        _ = await waitForExit(process, upTo: .seconds(3600))
    }

    /// Whether the program ended within `limit`; this looks every 10 ms.
    private static func waitForExit(_ process: ChildProcess, upTo limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    private static func wrap(_ bootstrap: NIOPipeBootstrap, input: CInt) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        do {
            return try await bootstrap.takingOwnershipOfDescriptor(input: input) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel(wrappingChannelSynchronously: channel) }
            }
        } catch {
            close(input)
            throw error
        }
    }

    private static func wrap(_ bootstrap: NIOPipeBootstrap, output: CInt) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        do {
            return try await bootstrap.takingOwnershipOfDescriptor(output: output) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel(wrappingChannelSynchronously: channel) }
            }
        } catch {
            close(output)
            throw error
        }
    }

    /// The path of `program`: itself when it holds a `/`, else the first executable file of that
    /// name in `PATH` (the configured environment's, else the agent's).
    static func findExecutable(_ program: String, environment: [String: String]) throws -> String {
        if program.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: program) else {
                throw ExecError(code: .cannotStart, message: "\(program) is not an executable file; check the path and its permissions (chmod +x)")
            }
            return program
        }
        let path = environment["PATH"] ?? ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ExecError(code: .cannotStart, message: "program `\(program)` not found on PATH (\(path)); install it or give its full path in `command`")
    }
}

/// The two ends of a pipe, both closed on `exec` so that no other child inherits them.
private struct PipeDescriptors {
    let read: CInt
    let write: CInt

    init() throws {
        var descriptors: [CInt] = [-1, -1]
        guard pipe(&descriptors) == 0 else {
            throw ExecError(code: .cannotStart, message: "cannot make a pipe: \(String(cString: strerror(errno)))")
        }
        for descriptor in descriptors { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        read = descriptors[0]
        write = descriptors[1]
    }

    func closeBoth() {
        close(read)
        close(write)
    }
}

/// Why an exec plugin's program could not run.
public struct ExecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: String, Sendable, Hashable {
        /// The plugin's configuration cannot work (an empty `command`).
        case invalidConfiguration
        /// The program could not be found or started.
        case cannotStart
        /// The program did not answer the agent's `hello` in time, or answered it wrongly.
        case handshake
    }

    /// The kind of failure.
    public var code: Code
    /// What happened and how to fix it.
    public var message: String

    public var description: String { message }
}

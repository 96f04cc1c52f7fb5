#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Spawn
import NIOCore
import NIOPosix

/// How to start a server that the generator runs itself, and restart it (for `recovery`).
struct ServerLaunch: Sendable {
    /// The command, run by `/bin/sh -c 'exec …'`; `{port}`, `{database}` and `{dir}` are replaced.
    var command: String
    /// The port it is told to listen on.
    var port: Int
    /// A folder of its own for its database and log.
    var directory: String
    /// The database given to the server as `{database}`: a fresh SQLite file in `directory` when nil.
    var database: String? = nil

    var databasePath: String { database ?? directory + "/bench.db" }
    var logPath: String { directory + "/server.log" }

    /// The arguments that `--start-server` gives the bundled `switchboard serve`: rate limits out of
    /// the way (a throughput run sends far more than 10 messages a second per user, registers
    /// thousands of users and holds 10,000 connections from one address) and the cheapest bcrypt
    /// cost (the generator registers thousands of users).
    static let bundledServerArguments = [
        "serve --host 127.0.0.1 --port {port} --database {database}",
        "--messages-per-second 1000000 --message-burst 1000000 --bcrypt-cost 4",
        "--max-connections-per-address 1000000 --auth-attempts-per-minute 1000000 --password-hash-queue 10000",
    ].joined(separator: " ")

    /// The bundled server binary: the option, else a release build in the usual places.
    static func findBundledBinary(_ explicit: String?) throws -> String {
        if let explicit { return explicit }
        let candidates = [".build/release/switchboard", ".build-release/release/switchboard", ".build/debug/switchboard"]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            return FileManager.default.currentDirectoryPath + "/" + candidate
        }
        throw BenchError("no switchboard binary found; build it with `swift build -c release --product switchboard` or pass --server-binary")
    }

    /// A free TCP port on the loopback interface.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("cannot open a socket to find a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw BenchError("cannot bind a socket to find a free port") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A server process the generator started: its pid, and how to stop and start it again.
final class ServerProcess: @unchecked Sendable {
    let launch: ServerLaunch
    private let lock = NSLock()
    private var process: ChildProcess?

    init(launch: ServerLaunch) {
        self.launch = launch
    }

    var baseURL: String { "http://127.0.0.1:\(launch.port)" }

    var pid: Int32? {
        lock.withLock { process.map { $0.id } }
    }

    /// Starts the server and waits until `/healthz` answers.
    func start(timeout: Duration = .seconds(60)) async throws {
        let command = launch.command
            .replacingOccurrences(of: "{port}", with: "\(launch.port)")
            .replacingOccurrences(of: "{database}", with: launch.databasePath)
            .replacingOccurrences(of: "{dir}", with: launch.directory)
        var environment = ProcessInfo.processInfo.environment
        if environment["LOG_LEVEL"] == nil { environment["LOG_LEVEL"] = "warning" }
        if !FileManager.default.fileExists(atPath: launch.logPath) {
            _ = FileManager.default.createFile(atPath: launch.logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: launch.logPath))
        log.seekToEndOfFile()
        defer { try? log.close() }
        let nothing = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/null"))
        defer { try? nothing.close() }
        let process = try ChildProcess.spawn(
            "/bin/sh", arguments: ["-c", "exec " + command], environment: environment,
            standardInput: nothing.fileDescriptor, standardOutput: log.fileDescriptor, standardError: log.fileDescriptor
        )
        lock.withLock { self.process = process }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let ended = process.exitStatus() {
                throw BenchError("the server ended (\(ended)); see \(launch.logPath)")
            }
            if await ServerAPI.isHealthy(baseURL: baseURL) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw BenchError("the server did not answer /healthz within \(timeout); see \(launch.logPath)")
    }

    /// Sends SIGTERM (then SIGKILL after `timeout`) and waits for the process to exit.
    func stop(timeout: Duration = .seconds(30)) async {
        guard let process = lock.withLock({ self.process }) else { return }
        process.send(SIGTERM)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                process.send(SIGKILL)
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        lock.withLock { self.process = nil }
    }
}

/// A failure worth a plain message.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import Logging
import Spawn
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import PostgresArchive

/// The test PostgreSQL that `scripts/services/postgres.sh` starts; its absence fails the test.
enum TestPostgres {
    static var url: String {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_POSTGRES_URL"], !url.isEmpty else {
                throw TestFailure(
                    "SWITCHBOARD_TEST_POSTGRES_URL is not set: these tests need a PostgreSQL server. Run them with scripts/test.sh, or `source scripts/services/postgres.sh` first")
            }
            return url
        }
    }

    /// A schema of its own for each test, so that tests run side by side on one database.
    static func uniqueSchema() -> String {
        "archive_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
    }

    static let logger: Logger = {
        var logger = Logger(label: "switchboard.archive.test")
        logger.logLevel = .warning
        return logger
    }()

    /// Runs `body` with a prepared archive in a new schema of the test database.
    static func withArchive<Result: Sendable>(language: String = "english", _ body: @Sendable (ArchiveDatabase) async throws -> Result) async throws -> Result {
        try await ArchiveDatabase.withDatabase(url: try url, schema: uniqueSchema(), logger: logger) { archive in
            try await archive.prepare(language: language)
            return try await body(archive)
        }
    }
}

/// Waits until `condition` holds, looking every 50 ms; fails after `timeout`, saying what it waited for.
func eventually(_ what: String, timeout: Duration = .seconds(30), _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if (try? await condition()) == true { return }
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// A message as the server would hand it over.
func message(_ seq: Int, room: String = "room-1", user: String = "user-1", _ content: String, at createdAt: Int = 1_780_000_000_000, meta: JSONValue? = nil) -> Message {
    Message(id: "\(room)-m\(seq)", roomId: room, seq: seq, userId: user, content: content, createdAt: createdAt, meta: meta)
}

func room(_ id: String = "room-1", name: String = "general", isPublic: Bool = false) -> Room {
    Room(id: id, name: name, kind: .group, isPublic: isPublic, createdAt: 1_780_000_000_000, lastSeq: 0, members: [])
}

/// A PostgreSQL cluster of a test's own, to stop and start (the machine's binaries; as root, run
/// as the `postgres` user, since PostgreSQL refuses to run as root).
final class ThrowawayPostgres: Sendable {
    let directory: String
    let port: Int
    let binaries: String
    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable" }

    init() async throws {
        let candidates = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).sorted { $0.compare($1, options: .numeric) == .orderedDescending }
        guard let version = candidates.first(where: { FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb") }) else {
            throw TestFailure("no PostgreSQL binaries in /usr/lib/postgresql/*/bin: run scripts/services/postgres.sh once, which installs them")
        }
        binaries = "/usr/lib/postgresql/\(version)/bin"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("archive-pg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try freePort()
        if getuid() == 0 { try await Self.execute("/usr/bin/chown", ["postgres", directory], log: nil) }
        try await runAsOwner("\(binaries)/initdb", ["-D", "\(directory)/data", "-A", "trust", "-U", "postgres", "--no-sync"])
    }

    func start() async throws {
        try await runAsOwner(
            "\(binaries)/pg_ctl",
            ["-D", "\(directory)/data", "-l", "\(directory)/log", "-w", "-t", "60", "-o", "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    }

    func stop() async throws {
        try await runAsOwner("\(binaries)/pg_ctl", ["-D", "\(directory)/data", "-m", "fast", "-w", "stop"])
    }

    func destroy() async {
        try? await runAsOwner("\(binaries)/pg_ctl", ["-D", "\(directory)/data", "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func runAsOwner(_ program: String, _ arguments: [String]) async throws {
        if getuid() == 0 {
            try await Self.execute("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments, log: "\(directory)/commands.log")
        } else {
            try await Self.execute(program, arguments, log: "\(directory)/commands.log")
        }
    }

    private static func execute(_ program: String, _ arguments: [String], log: String?) async throws {
        let output = open(log ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o666)
        let input = open("/dev/null", O_RDONLY)
        defer {
            close(output)
            close(input)
        }
        let process = try ChildProcess.spawn(
            program, arguments: arguments, environment: ProcessInfo.processInfo.environment, workingDirectory: "/", standardInput: input, standardOutput: output,
            standardError: output)
        let end = await process.termination()
        guard end == .exited(0) else {
            let text = log.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            throw TestFailure("\(program) \(arguments.joined(separator: " ")) ended with \(end): \(text.suffix(2000))")
        }
    }
}

/// A loopback port nobody listens on now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw TestFailure("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

import Foundation
import Synchronization
import SwitchboardProtocol
import SwitchboardTesting
import Testing

/// An ack means stored: the `switchboard` binary killed at once (SIGKILL, as a crash) while
/// messages flow keeps every message it acknowledged, once each.
@Suite("Durability of acked messages", .timeLimit(.minutes(2)))
struct DurabilityTests {
    /// When the kill comes: while messages flow, or once the last one sent was acked and the
    /// server is idle (nothing else of its would write the newest commit out).
    enum Moment: String, CaseIterable, CustomTestStringConvertible {
        case whileSending, afterTheLastAck
        var testDescription: String { rawValue }
    }

    @Test("every message acked before a kill -9 is there after the restart, once", arguments: Moment.allCases)
    func ackedMessagesSurviveAKill(_ moment: Moment) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-durability-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = directory + "/chat.db"

        let first = try Command(Self.serve(database))
        defer { first.kill() }
        let server = TestServer(port: try await Self.port(of: first), databasePath: database)
        let ana = try await server.register("ana")
        let room = try await server.createRoom("general", token: ana.token)

        // Four connections send one message after another, each waiting for its ack, so that the
        // server's group commits hold several; the kill comes once 300 are acked.
        var sockets: [TestSocket] = []
        for _ in 0..<4 { sockets.append(try await server.connect(token: ana.token)) }
        let acked = Acked()
        let (enough, enoughContinuation) = AsyncStream<Void>.makeStream()
        await withTaskGroup { senders in
            for (connection, socket) in sockets.enumerated() {
                senders.addTask {
                    // A sender that stops before the kill (a refusal) ends the wait too; the count
                    // below then says how far they got.
                    defer { enoughContinuation.finish() }
                    for number in 0... {
                        let content = "\(connection)-\(number)"
                        // Ends when the server is killed: the message in flight has no ack.
                        guard (try? await socket.sendMessage(content, roomId: room.id)) != nil else { break }
                        let count = acked.contents.withLock { $0.append(content); return $0.count }
                        if count == 300 { enoughContinuation.yield() }
                        if count >= 300, moment == .afterTheLastAck { break }
                    }
                    await socket.close()
                }
            }
            if moment == .whileSending {
                for await _ in enough { break }
                first.kill()
            }
        }
        first.kill()
        _ = try await first.exitStatus()
        let ackedContents = acked.contents.withLock { $0 }
        #expect(ackedContents.count >= 300)

        let second = try Command(Self.serve(database))
        defer { second.kill() }
        let restarted = TestServer(port: try await Self.port(of: second), databasePath: database)
        let token = try await restarted.request(.POST, "/api/login", json: LoginRequest(username: "ana", password: "password123"))
            .decode(AuthResponse.self).token
        var stored: [String] = []
        var after = 0
        while true {
            let page = try await restarted.request(.GET, "/api/rooms/\(room.id)/messages?after=\(after)&limit=100", token: token)
                .decode(MessagesResponse.self)
            guard let last = page.messages.last else { break }
            stored += page.messages.map(\.content)
            after = last.seq
        }
        let missing = Set(ackedContents).subtracting(stored)
        #expect(missing.isEmpty, "\(missing.count) of \(ackedContents.count) acked messages are gone, such as \(missing.prefix(5).sorted())")
        #expect(stored.count == Set(stored).count, "a message is stored twice")
        // Stored and not yet acked when the kill came: at most one in flight per connection.
        #expect(stored.count <= ackedContents.count + 4)
    }

    private final class Acked: Sendable {
        let contents = Mutex<[String]>([])
    }

    private static func serve(_ database: String) -> [String] {
        ["serve", "--port", "0", "--database", database, "--bcrypt-cost", "4",
         "--messages-per-second", "1000000", "--message-burst", "1000000"]
    }

    /// The port from the server's log line "switchboard listening".
    private static func port(of server: Command) async throws -> Int {
        let lines = try await server.errorLines { $0.contains { $0.contains("switchboard listening") } }
        let line = try #require(lines.first { $0.contains("switchboard listening") })
        let address = try #require(line.split(separator: " ").first { $0.hasPrefix("switchboard.address=") })
        return try #require(Int(address.split(separator: ":").last ?? ""))
    }
}

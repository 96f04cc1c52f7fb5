import Synchronization

/// Where a bot or bridge keeps, for each room, the `seq` of the last message it *handled*, so that
/// after a restart it resumes there: nothing handled twice, nothing skipped.
///
/// The client reads it when it starts following a room (``ChatClient/subscribe(to:after:)`` without
/// `after`, and ``ChatClient/followAllRooms()``) and writes it when the application calls
/// ``ChatClient/markHandled(_:)``, after the message was handled, not when it was received. Implement
/// it over your own storage (the agent keeps positions in its SQLite database), or use
/// ``MemoryPositionStore`` in tests.
///
/// ```swift
/// var configuration = ClientConfiguration(server: server, credentials: .token(token))
/// configuration.positions = MyPositions(database)
/// try await ChatClient.withClient(configuration: configuration) { client in
///     for await event in client.followAllRooms() {
///         guard case .message(let message) = event else { continue }
///         try await handle(message)
///         try await client.markHandled(message)
///     }
/// }
/// ```
public protocol PositionStore: Sendable {
    /// The last handled `seq` of the room; `nil` when nothing was recorded.
    func position(in roomId: String) async throws -> Int?
    /// Records that everything up to `seq` of the room was handled. Called with increasing values per room.
    func setPosition(_ seq: Int, in roomId: String) async throws
}

/// A ``PositionStore`` in memory: for tests, and for clients that restart with their process anyway.
public final class MemoryPositionStore: PositionStore {
    private let positions: Mutex<[String: Int]>

    /// A store holding `positions` (room id → last handled `seq`).
    public init(_ positions: [String: Int] = [:]) {
        self.positions = Mutex(positions)
    }

    public func position(in roomId: String) async throws -> Int? {
        positions.withLock { $0[roomId] }
    }

    public func setPosition(_ seq: Int, in roomId: String) async throws {
        positions.withLock { $0[roomId] = max($0[roomId] ?? 0, seq) }
    }

    /// Every recorded position.
    public var all: [String: Int] { positions.withLock { $0 } }
}

import Foundation
import Logging
import SwitchboardProtocol
import Testing

@testable import SwitchboardSQLite
import SwitchboardStore
import SwitchboardTesting

/// A fresh directory for one test's database files, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-store-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory.path)
}

/// Quiet, so that expected failures (a batch rolled back on purpose) do not clutter the output.
let testLogger: Logger = {
    var logger = Logger(label: "SwitchboardStoreTests")
    logger.logLevel = .critical
    return logger
}()

func openStore(at path: String) async throws -> SQLiteStore {
    try await SQLiteStore.open(path: path, logger: testLogger)
}

/// The conformance suite's way in: a store of `database`'s backend on a new database, closed and
/// removed after `body`. Every test that holds for any ``ChatStore`` runs once per backend
/// (`@Test(arguments: TestDatabase.allCases)`), as fluent-kit's `FluentBenchmarker` does; on
/// PostgreSQL it needs `SWITCHBOARD_TEST_POSTGRES_URL` and fails without it.
func withStore<T>(_ database: TestDatabase, _ body: (any ChatStore) async throws -> T) async throws -> T {
    try await database.withStore(logger: testLogger, body)
}

/// A SQLite store on a new file, closed after `body` whether it succeeds or not: for the tests of
/// what only the SQLite backend has (its writer queue, its file).
func withStore<T>(_ body: (SQLiteStore) async throws -> T) async throws -> T {
    try await withTemporaryDirectory { directory in try await withStore(at: directory + "/chat.db", body) }
}

/// A SQLite store on the file at `path`, closed after `body` whether it succeeds or not.
func withStore<T>(
    at path: String, configuration: SQLiteStore.Configuration = .init(), _ body: (SQLiteStore) async throws -> T
) async throws -> T {
    let store = try await SQLiteStore.open(path: path, configuration: configuration, logger: testLogger)
    do {
        let value = try await body(store)
        try await store.close()
        return value
    } catch {
        try? await store.close()
        throw error
    }
}

extension ChatStore {
    func makeUser(_ username: String, displayName: String? = nil) async throws -> User {
        try await createUser(NewUser(username: username, displayName: displayName ?? username, passwordHash: "hash-\(username)", isBot: false, now: 1))
    }

    func makeRoom(_ name: String, creator: User?, members: [User] = [], isPublic: Bool = false, now: Int = 1) async throws -> Room {
        try await createRoom(NewRoom(name: name, isPublic: isPublic, creatorId: creator?.id, memberIds: members.map(\.id), now: now))
    }

    @discardableResult
    func send(_ content: String, in room: Room, from user: User, clientId: String? = nil, meta: JSONValue? = nil) async throws -> AppendResult {
        try await append(NewMessage(roomId: room.id, userId: user.id, content: content, clientId: clientId, replyTo: nil, meta: meta, now: 1_000))
    }
}

extension SQLiteStore {
    /// Keeps the writer busy inside a write until the returned closure is called, so that the appends
    /// made meanwhile all wait for the same group commit.
    func holdWriter() async -> @Sendable () -> Void {
        let (entered, enteredContinuation) = AsyncStream<Void>.makeStream()
        let (released, releaseContinuation) = AsyncStream<Void>.makeStream()
        Task {
            try await self.write { _ in
                enteredContinuation.yield()
                for await _ in released { break }
            }
        }
        for await _ in entered { break }
        return { releaseContinuation.yield() }
    }

    /// Waits, without a fixed sleep, until `count` append calls are queued.
    func waitForPendingAppends(_ count: Int) async {
        while writeQueue.withLock({ $0.appends.count }) < count { await Task.yield() }
    }
}

func storeErrorCode(_ body: () async throws -> some Any) async -> StoreError.Code? {
    do {
        _ = try await body()
        return nil
    } catch {
        return (error as? StoreError)?.code
    }
}

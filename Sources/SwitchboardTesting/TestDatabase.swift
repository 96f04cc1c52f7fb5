import Foundation
import Logging
import SwitchboardPostgres
import SwitchboardSQLite
import SwitchboardStore

/// The storage backend tests run on, chosen by the environment so that the same tests run on each:
/// `SWITCHBOARD_TEST_DATABASE=sqlite` (the default) or `postgres`, the latter on the server at
/// `SWITCHBOARD_TEST_POSTGRES_URL` (which `scripts/services/postgres.sh` starts and exports).
///
/// Each test gets a database of its own: a file in a temporary folder, or a database created on
/// the PostgreSQL server and dropped after.
public enum TestDatabase: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite
    case postgres

    /// The backend `SWITCHBOARD_TEST_DATABASE` names; SQLite when unset.
    public static var selected: TestDatabase {
        get throws {
            let name = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_DATABASE"] ?? "sqlite"
            guard let database = TestDatabase(rawValue: name.lowercased()) else {
                throw TestFailure("SWITCHBOARD_TEST_DATABASE=\(name) is not one of sqlite, postgres")
            }
            return database
        }
    }

    public var description: String { rawValue }

    /// The PostgreSQL server for tests. Fails, never skips, when it is not configured.
    public static func postgresServer() throws -> PostgresStore.Configuration {
        guard let url = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_POSTGRES_URL"], !url.isEmpty else {
            throw TestFailure(
                """
                SWITCHBOARD_TEST_POSTGRES_URL is not set: these tests need a PostgreSQL server. Run them with scripts/test.sh, \
                or start one with `source scripts/services/postgres.sh` first
                """)
        }
        var configuration = try PostgresStore.Configuration(url: url)
        // Tests run side by side, each with a pool of its own: keep each pool small.
        configuration.maximumConnections = 4
        return configuration
    }

    /// A new name for a database (or file) no other test uses.
    public func newDatabase() throws -> String {
        switch self {
        case .sqlite:
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-tests-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            return folder.appendingPathComponent("test.db").path
        case .postgres:
            var components = URLComponents()
            let server = try Self.postgresServer()
            components.scheme = "postgres"
            components.host = server.host
            components.port = server.port
            components.user = server.username
            components.password = server.password
            components.path = "/sb_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            return components.string!
        }
    }

    /// Opens the store of `database` (from ``newDatabase()``), creating the PostgreSQL database
    /// when it does not exist yet.
    public func openStore(_ database: String, logger: Logger) async throws -> any ChatStore {
        switch self {
        case .sqlite:
            return try await SQLiteStore.open(path: database, logger: logger)
        case .postgres:
            var configuration = try PostgresStore.Configuration(url: database)
            configuration.maximumConnections = try Self.postgresServer().maximumConnections
            do {
                return try await PostgresStore.open(configuration: configuration, logger: logger)
            } catch let error as StoreError where error.message.contains("does not exist") {
                try await PostgresStore.createDatabase(configuration.database, server: try Self.postgresServer(), logger: logger)
                return try await PostgresStore.open(configuration: configuration, logger: logger)
            }
        }
    }

    /// Removes `database`: the file's folder, or the PostgreSQL database.
    public func remove(_ database: String, logger: Logger) async throws {
        switch self {
        case .sqlite:
            try? FileManager.default.removeItem(atPath: (database as NSString).deletingLastPathComponent)
        case .postgres:
            let name = try PostgresStore.Configuration(url: database).database
            try await PostgresStore.dropDatabase(name, server: try Self.postgresServer(), logger: logger)
        }
    }

    /// A store on a new database for the length of `body`, then closed and removed.
    public func withStore<T>(logger: Logger, _ body: (any ChatStore) async throws -> T) async throws -> T {
        let database = try newDatabase()
        let store = try await openStore(database, logger: logger)
        do {
            let value = try await body(store)
            try await store.close()
            try await remove(database, logger: logger)
            return value
        } catch {
            try? await store.close()
            try? await remove(database, logger: logger)
            throw error
        }
    }
}

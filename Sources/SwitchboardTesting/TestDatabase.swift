import Foundation
import Logging
import SwitchboardPostgres
import SwitchboardSQLite
import SwitchboardStore

/// The storage backend tests run on, chosen by the environment so that the same tests run on each:
/// `SWITCHBOARD_TEST_DATABASE=sqlite` (the default) or `postgres`, the latter on the server at
/// `SWITCHBOARD_TEST_POSTGRES_URL` (which `scripts/services/postgres.sh` starts and exports).
///
/// Each test gets a database of its own: a file in a temporary folder, or a schema of its own in
/// the PostgreSQL server's database, dropped after. (A schema rather than a database: hundreds of
/// test servers at once each creating a database, a copy of the template, overload one server.)
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
        // Hundreds of test servers share the PostgreSQL server: a small pool (two commits in flight and a reader).
        configuration.maximumConnections = 3
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
            components.path = "/" + server.database
            let schema = "sb_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            components.queryItems = [URLQueryItem(name: "schema", value: schema)]
            return components.string!
        }
    }

    /// Opens the store of `database` (from ``newDatabase()``); a PostgreSQL schema is created by its first opening.
    public func openStore(_ database: String, logger: Logger) async throws -> any ChatStore {
        switch self {
        case .sqlite:
            return try await SQLiteStore.open(path: database, logger: logger)
        case .postgres:
            var configuration = try PostgresStore.Configuration(url: database)
            configuration.maximumConnections = try Self.postgresServer().maximumConnections
            return try await PostgresStore.open(configuration: configuration, logger: logger)
        }
    }

    /// Removes `database`: the file's folder, or the PostgreSQL schema.
    public func remove(_ database: String, logger: Logger) async throws {
        switch self {
        case .sqlite:
            try? FileManager.default.removeItem(atPath: (database as NSString).deletingLastPathComponent)
        case .postgres:
            guard let schema = try PostgresStore.Configuration(url: database).schema else { return }
            try await PostgresStore.dropSchema(schema, server: try Self.postgresServer(), logger: logger)
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
            // Not cancelled with a test stopped by its time limit (see TestServer.withServer).
            try? await Task { try await store.close() }.value
            try? await remove(database, logger: logger)
            throw error
        }
    }
}

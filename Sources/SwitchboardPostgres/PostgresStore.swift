import Foundation
import Logging
import NIOSSL
import PostgresNIO
import Synchronization
import SwitchboardProtocol
import SwitchboardStore

/// A ``ChatStore`` in a PostgreSQL database, for a server that outgrows one SQLite file.
///
/// Queries run on a pool of connections (postgres-nio's `PostgresClient`, run by the store for as
/// long as it is open). Messages sent at the same time are stored in one transaction (group
/// commit); while one commits, the next may start on another connection (up to
/// ``Configuration/maxConcurrentCommits``). Each room's row is locked while its messages are
/// numbered, and each commit starts only once the one before holds its locks, so `seq` stays
/// gap-free and in call order, even with several servers on one database. Each `append` returns
/// only after its commit, and callers are answered in the order of their calls.
///
/// ```swift
/// let store = try await PostgresStore.open(
///     configuration: try .init(url: "postgres://switchboard:secret@127.0.0.1/switchboard"), logger: logger)
/// let result = try await store.append(NewMessage(roomId: room.id, userId: ana.id, content: "hi",
///                                                clientId: nil, replyTo: nil, meta: nil, now: now))
/// try await store.close()
/// ```
public final class PostgresStore: ChatStore {
    /// Where the database is and how the store uses it. Every field but the address has a default.
    public struct Configuration: Sendable {
        /// Whether to speak TLS to the server, as libpq's `sslmode`.
        public enum TLSMode: String, Sendable, Hashable {
            /// Never.
            case disable
            /// When the server offers it, without checking its certificate (the default, as libpq's).
            case prefer
            /// Always, with the server's certificate checked (against `sslrootcert`, or the system's
            /// authorities); fail when the server does not offer TLS.
            case require
        }

        public var host: String
        /// 5432 by default.
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String
        /// `.prefer` by default.
        public var tls: TLSMode
        /// Most connections in the pool (10 by default, at least one more than `maxConcurrentCommits`,
        /// so that reads always find one).
        public var maximumConnections: Int
        /// The most messages stored by one group commit (512 by default); one `append` call is never split.
        public var maxBatchSize: Int
        /// The most group commits in flight at once, each on a connection of its own (2 by default;
        /// 1 stores one batch after another). A commit spends most of its time waiting for
        /// PostgreSQL (round trips, the WAL flush), during which the next batch can be numbered.
        public var maxConcurrentCommits: Int
        /// How long to wait for a connection to the server (10 s by default).
        public var connectTimeout: Duration
        /// The schema the tables live in (its `search_path`), created when missing; nil (the default)
        /// for the database's usual one, `public`. Lets several servers (or test servers) share one
        /// database, each in a schema of its own. Only `a-z`, `0-9` and `_`.
        public var schema: String?
        /// A PEM file of the certificate authorities to trust for the server's TLS certificate (libpq's
        /// `sslrootcert`), for a server with a certificate of its own making; nil (the default) for the
        /// system's.
        public var rootCertificatePath: String?

        public init(
            host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres", password: String? = nil,
            database: String = "switchboard", tls: TLSMode = .prefer, maximumConnections: Int = 10, maxBatchSize: Int = 512,
            maxConcurrentCommits: Int = 2, connectTimeout: Duration = .seconds(10), schema: String? = nil
        ) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.tls = tls
            self.maximumConnections = maximumConnections
            self.maxBatchSize = maxBatchSize
            self.maxConcurrentCommits = maxConcurrentCommits
            self.connectTimeout = connectTimeout
            self.schema = schema
        }

        /// Reads `postgres://user:password@host:port/database?sslmode=disable|prefer|require&sslrootcert=path&schema=name&commits=N`
        /// (also `postgresql://`). Throws ``StoreError`` `.unavailable` naming the expected form.
        public init(url: String) throws {
            let expected = """
                expected postgres://USER:PASSWORD@HOST:PORT/DATABASE (port, password, ?sslmode=disable|prefer|require, \
                &sslrootcert=PATH, &schema=NAME and &commits=N optional)
                """
            guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
                scheme == "postgres" || scheme == "postgresql"
            else {
                throw StoreError(.unavailable, "\(RedactedURL.string(url)) is not a PostgreSQL URL; \(expected)")
            }
            guard let host = components.host, !host.isEmpty else {
                throw StoreError(.unavailable, "the PostgreSQL URL \(RedactedURL.string(url)) names no host; \(expected)")
            }
            let database = String(components.path.drop { $0 == "/" })
            guard !database.isEmpty, !database.contains("/") else {
                throw StoreError(.unavailable, "the PostgreSQL URL \(RedactedURL.string(url)) names no database; \(expected)")
            }
            self.init(
                host: host, port: components.port ?? 5432, username: components.user ?? "postgres", password: components.password,
                database: database)
            for item in components.queryItems ?? [] {
                switch (item.name, item.value) {
                case ("sslmode", let value?):
                    // libpq's verify-* modes require TLS and check the certificate, as require does here.
                    let mode = value.hasPrefix("verify") ? "require" : value
                    guard let tls = TLSMode(rawValue: mode) else {
                        throw StoreError(.unavailable, "sslmode=\(value) in the PostgreSQL URL is not one of disable, prefer, require")
                    }
                    self.tls = tls
                case ("sslrootcert", let value?):
                    self.rootCertificatePath = value
                case ("commits", let value?):
                    guard let count = Int(value), (1...16).contains(count) else {
                        throw StoreError(.unavailable, "commits=\(value) in the PostgreSQL URL is not a number of group commits from 1 to 16")
                    }
                    self.maxConcurrentCommits = count
                case ("schema", let value?):
                    try PostgresStore.checkIdentifier(value, kind: "schema")
                    self.schema = value
                default:
                    throw StoreError(.unavailable, "\(item.name) in the PostgreSQL URL is not an option; \(expected)")
                }
            }
        }

        /// Whether `text` looks like a PostgreSQL URL rather than a file path.
        public static func isURL(_ text: String) -> Bool {
            let lowered = text.lowercased()
            return lowered.hasPrefix("postgres://") || lowered.hasPrefix("postgresql://")
        }

        /// `host:port/database`, for messages.
        var address: String { "\(host):\(port)/\(database)" }

        var connectionConfiguration: PostgresConnection.Configuration {
            get throws {
                var configuration = PostgresConnection.Configuration(
                    host: host, port: port, username: username, password: password, database: database, tls: try tlsConfiguration)
                let (seconds, attoseconds) = connectTimeout.components
                configuration.options.connectTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
                configuration.options.additionalStartupParameters = startupParameters
                return configuration
            }
        }

        var clientConfiguration: PostgresClient.Configuration {
            var configuration = PostgresClient.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: clientTLS)
            configuration.options.maximumConnections = max(maximumConnections, max(maxConcurrentCommits, 1) + 1)
            configuration.options.connectTimeout = connectTimeout
            configuration.options.additionalStartupParameters = startupParameters
            return configuration
        }

        private var startupParameters: [(String, String)] {
            schema.map { [("search_path", $0)] } ?? []
        }

        private var tlsConfiguration: PostgresConnection.Configuration.TLS {
            get throws {
                guard tls != .disable else { return .disable }
                let context: NIOSSLContext
                do {
                    context = try NIOSSLContext(configuration: clientTLSConfiguration)
                } catch {
                    throw StoreError(
                        .unavailable, "cannot read the certificates of sslrootcert=\(rootCertificatePath ?? "") (\(error)); give a PEM file",
                        cause: error)
                }
                return tls == .prefer ? .prefer(context) : .require(context)
            }
        }

        private var clientTLS: PostgresClient.Configuration.TLS {
            switch tls {
            case .disable: .disable
            case .prefer: .prefer(clientTLSConfiguration)
            case .require: .require(clientTLSConfiguration)
            }
        }

        private var clientTLSConfiguration: TLSConfiguration {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let rootCertificatePath { configuration.trustRoots = .file(rootCertificatePath) }
            // As libpq's: `prefer` takes a plain connection from a server without TLS, so checking the
            // certificate would stop no one in the middle; it would only refuse the self-signed
            // certificates many servers ship with. `require` checks it.
            if tls == .prefer { configuration.certificateVerification = .none }
            return configuration
        }
    }

    let configuration: Configuration
    let logger: Logger
    let client: PostgresClient
    private let clientTask: Task<Void, Never>
    let appendQueue: Mutex<AppendQueue>
    /// Group commits done so far, for tests and diagnostics.
    let committedBatches = Atomic<Int>(0)

    private init(configuration: Configuration, logger: Logger, client: PostgresClient, clientTask: Task<Void, Never>) {
        self.configuration = configuration
        self.logger = logger
        self.client = client
        self.clientTask = clientTask
        self.appendQueue = Mutex(AppendQueue(maxBatchSize: configuration.maxBatchSize, maxConcurrentCommits: configuration.maxConcurrentCommits))
    }

    /// Connects, brings the schema up to date (``PostgresSchema``) and starts the pool.
    ///
    /// Throws ``StoreError`` `.unavailable` with what to do when the server cannot be reached, the
    /// database or role is missing, the password or the connection is refused, or the database has
    /// a newer schema than this program.
    public static func open(configuration: Configuration, logger: Logger) async throws -> PostgresStore {
        try await migrate(configuration: configuration, logger: logger)
        let client = PostgresClient(configuration: configuration.clientConfiguration, backgroundLogger: PoolLogHandler.logger(logger))
        // Detached: a graceful shutdown of the caller's service group must not stop the pool under
        // writes still being committed (`close()` stops it once they are).
        let clientTask = Task.detached { await client.run() }
        return PostgresStore(configuration: configuration, logger: logger, client: client, clientTask: clientTask)
    }

    /// Applies the migrations the database lacks and returns the schema version it then has; what
    /// `switchboard migrate` does, and what ``open(configuration:logger:)`` does first.
    @discardableResult
    public static func migrate(configuration: Configuration, logger: Logger) async throws -> Int {
        if let schema = configuration.schema { try checkIdentifier(schema, kind: "schema") }
        return try await withConnection(configuration: configuration, logger: logger) { connection in
            try await PostgresSchema.migrate(connection, schema: configuration.schema, logger: logger)
        }
    }

    /// One connection of its own for `body`, closed after; errors explained.
    @discardableResult
    static func withConnection<T>(configuration: Configuration, logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration.connectionConfiguration, id: 0, logger: logger)
        } catch {
            throw ConnectionDiagnosis.explain(error, configuration: configuration)
        }
        do {
            let value = try await body(connection)
            try await connection.close()
            return value
        } catch {
            try? await connection.close()
            throw ConnectionDiagnosis.explain(error, configuration: configuration)
        }
    }

    /// Waits for the messages already accepted, then stops the pool. Later calls throw
    /// `.unavailable`; closing twice does nothing.
    public func close() async throws {
        guard appendQueue.withLock({ $0.close() }) else { return }
        await waitUntilAppendsDrained()
        clientTask.cancel()
        await clientTask.value
    }

    static let closedError = StoreError(.unavailable, "the store is closed")

    /// Runs `body` on a pooled connection; errors become `StoreError`.
    @discardableResult
    func read<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        guard !appendQueue.withLock({ $0.isClosed }) else { throw Self.closedError }
        do {
            return try await client.withConnection { connection in try await body(connection) }
        } catch {
            throw storeError(error)
        }
    }

    /// Runs `body` in a transaction on a pooled connection, rolled back when it throws.
    @discardableResult
    func write<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await read { connection in try await Self.transaction(on: connection, logger: logger, body) }
    }

    /// BEGIN, `body`, COMMIT; ROLLBACK and the body's own error when it throws.
    static func transaction<T>(on connection: PostgresConnection, logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await connection.query("BEGIN", logger: logger)
        do {
            let value = try await body(connection)
            try await connection.query("COMMIT", logger: logger)
            return value
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// Wraps the driver's errors so that callers see only `StoreError`.
    func storeError(_ error: any Error) -> StoreError {
        if let error = error as? StoreError { return error }
        return ConnectionDiagnosis.explain(error, configuration: configuration)
    }
}

// MARK: Databases

extension PostgresStore {
    /// Creates an empty database `name` on the server of `server` (whose own database is the one
    /// connected to, usually `postgres`), owned by its user: what tests and `switchboard import` need.
    /// `name` may hold only `a-z`, `0-9` and `_`, since it cannot be a bound parameter.
    public static func createDatabase(_ name: String, server: Configuration, logger: Logger) async throws {
        try checkIdentifier(name, kind: "database")
        try await withConnection(configuration: server, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
    }

    /// Drops database `name`, closing the connections still open to it; nothing when it is missing.
    public static func dropDatabase(_ name: String, server: Configuration, logger: Logger) async throws {
        try checkIdentifier(name, kind: "database")
        try await withConnection(configuration: server, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
        }
    }

    /// Drops schema `name` of `server`'s database with everything in it; nothing when it is missing.
    public static func dropSchema(_ name: String, server: Configuration, logger: Logger) async throws {
        try checkIdentifier(name, kind: "schema")
        try await withConnection(configuration: server, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \(name) CASCADE"), logger: logger)
        }
    }

    /// Names are written into SQL (they cannot be bound parameters): only plain, lowercase ones.
    static func checkIdentifier(_ name: String, kind: String) throws {
        // Written unquoted into SQL, so it must be a plain identifier: no digit first.
        guard let first = name.first, !first.isNumber, name.count <= 63,
            name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") })
        else {
            throw StoreError(.unavailable, "\(name) is not a \(kind) name: a-z, 0-9 and _, not starting with a digit, at most 63")
        }
    }
}

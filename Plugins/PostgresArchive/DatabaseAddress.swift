import Foundation
import SwitchboardProtocol
import NIOSSL
import PostgresNIO

/// An error of the archive, with a code, a message naming the cause and the fix, and the error underneath.
public struct ArchiveError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable {
        /// A configuration value or argument is wrong.
        case invalid
        /// The database cannot be reached or refused what was asked.
        case database
        /// No such room in the archive.
        case notFound
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        guard let cause else { return message }
        if let error = cause as? PSQLError, let server = error.serverInfo?[.message] { return "\(message): \(server)" }
        return "\(message): \(String(reflecting: cause))"
    }
}

/// Where the archive's database is: `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=…]`.
public struct DatabaseAddress: Sendable, Hashable {
    /// Whether to speak TLS, as libpq's `sslmode`.
    public enum TLSMode: String, Sendable, Hashable {
        /// Never.
        case disable
        /// When the server offers it (the default).
        case prefer
        /// Always.
        case require
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    /// Reads a URL; throws ``ArchiveError`` `.invalid` naming the expected form.
    public init(url: String) throws {
        let expected = "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE (port, password and ?sslmode=disable|prefer|require optional)"
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw ArchiveError(.invalid, "\(RedactedURL.string(url)) is not a PostgreSQL URL; \(expected)")
        }
        guard let host = components.host, !host.isEmpty else { throw ArchiveError(.invalid, "the PostgreSQL URL \(RedactedURL.string(url)) names no host; \(expected)") }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw ArchiveError(.invalid, "the PostgreSQL URL \(RedactedURL.string(url)) names no database; \(expected)")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user ?? "postgres"
        self.password = components.password
        self.database = database
        self.tls = .prefer
        for item in components.queryItems ?? [] {
            guard item.name == "sslmode", let value = item.value else {
                throw ArchiveError(.invalid, "\(item.name) in the PostgreSQL URL is not an option; \(expected)")
            }
            guard let tls = TLSMode(rawValue: value.hasPrefix("verify") ? "require" : value) else {
                throw ArchiveError(.invalid, "sslmode=\(value) in the PostgreSQL URL is not one of disable, prefer, require")
            }
            self.tls = tls
        }
    }

    /// `host:port/database`, for messages.
    public var description: String { "\(host):\(port)/\(database)" }

    var clientConfiguration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch self.tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tls)
        // Few writers: the archive writes from one task; searches and exports take a second connection.
        configuration.options.maximumConnections = 4
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }
}

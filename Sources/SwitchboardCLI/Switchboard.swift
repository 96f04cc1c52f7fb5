import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SwitchboardPostgres
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardSQLite
import SwitchboardStore

@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A self-hosted chat server, and the tools around it.",
        subcommands: [Serve.self, Migrate.self, Export.self, Import.self, Users.self, Tokens.self, Rooms.self, Chat.self, Send.self, Tail.self, AgentCommand.self, ArchiveCommand.self],
        defaultSubcommand: Serve.self
    )
}

/// Options every command that opens the database shares.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: "SQLite file, or a postgres:// URL (env: SWITCHBOARD_DATABASE).")
    var database: String = ProcessInfo.processInfo.environment["SWITCHBOARD_DATABASE"] ?? "./switchboard.db"

    /// Opens the store (SQLite for a path, PostgreSQL for a `postgres://` URL), runs `body`,
    /// closes the store. `configuration` applies to SQLite only.
    func withStore<Result>(
        logger: Logger, configuration: SQLiteStore.Configuration = .init(), _ body: (any ChatStore) async throws -> Result
    ) async throws -> Result {
        let store: any ChatStore
        do {
            if PostgresStore.Configuration.isURL(database) {
                store = try await PostgresStore.open(configuration: try PostgresStore.Configuration(url: database), logger: logger)
            } else {
                store = try await SQLiteStore.open(path: database, configuration: configuration, logger: logger)
            }
        } catch let error as StoreError {
            throw Failure(description: error.message)
        }
        do {
            let result = try await body(store)
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }
}

/// Makes the process's logger: info by default, debug with `DEBUG=websocket:*` or `LOG_LEVEL=debug`.
func makeLogger(label: String = "switchboard") -> Logger {
    let environment = ProcessInfo.processInfo.environment
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: label)
    logger.logLevel = environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
    if debugsWebSocket { logger.logLevel = min(logger.logLevel, .debug) }
    return logger
}

/// Whether `DEBUG` asks for WebSocket logging, as in the system this replaces (`DEBUG=websocket:*`).
var debugsWebSocket: Bool {
    let patterns = (ProcessInfo.processInfo.environment["DEBUG"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    return patterns.contains { $0 == "*" || $0.hasPrefix("websocket") }
}

/// Prints an error the way a person reads it and exits non-zero.
struct Failure: Error, CustomStringConvertible {
    var description: String
}

import ArgumentParser
import SwitchboardPostgres
import SwitchboardSQLite
import SwitchboardStore

/// `switchboard migrate`: brings a database's schema up to date without starting the server, so
/// that an upgrade can migrate first and restart the servers after.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the schema migrations the database lacks, then exit (serve applies them too, at start).",
        discussion: "switchboard migrate --database postgres://switchboard:secret@127.0.0.1/switchboard"
    )

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let logger = makeLogger()
        do {
            if PostgresStore.Configuration.isURL(database.database) {
                let configuration = try PostgresStore.Configuration(url: database.database)
                let version = try await PostgresStore.migrate(configuration: configuration, logger: logger)
                print("PostgreSQL database \(configuration.database) is at schema version \(version)")
            } else {
                // Opening a SQLite store migrates it.
                try await SQLiteStore.open(path: database.database, logger: logger).close()
                print("SQLite database \(database.database) is up to date")
            }
        } catch let error as StoreError {
            throw Failure(description: error.message)
        }
    }
}

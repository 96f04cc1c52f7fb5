import Foundation
import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore
import SwitchboardTesting
import Testing

@testable import SwitchboardPostgres

/// What only the PostgreSQL backend has: its URL, its migrations, its errors, several processes
/// on one database. Needs `SWITCHBOARD_TEST_POSTGRES_URL`, and fails without it.
@Suite("PostgreSQL backend", .timeLimit(.minutes(1)))
struct PostgresTests {
    /// A new, empty database for `body`, dropped after.
    func withDatabase<T>(_ body: (PostgresStore.Configuration) async throws -> T) async throws -> T {
        let server = try TestDatabase.postgresServer()
        var configuration = server
        configuration.database = "sb_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await PostgresStore.createDatabase(configuration.database, server: server, logger: testLogger)
        do {
            let value = try await body(configuration)
            try await PostgresStore.dropDatabase(configuration.database, server: server, logger: testLogger)
            return value
        } catch {
            try? await PostgresStore.dropDatabase(configuration.database, server: server, logger: testLogger)
            throw error
        }
    }

    func openError(_ configuration: PostgresStore.Configuration) async -> StoreError? {
        do {
            let store = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            try? await store.close()
            return nil
        } catch {
            return error as? StoreError
        }
    }

    func schemaVersion(_ configuration: PostgresStore.Configuration) async throws -> Int {
        try await PostgresStore.withConnection(configuration: configuration, logger: testLogger) { connection in
            try await connection.query("SELECT max(version)::bigint FROM switchboard_schema", logger: testLogger).collect()[0].decode(Int.self)
        }
    }

    @Test func urlsAreReadWithEveryPart() throws {
        let full = try PostgresStore.Configuration(url: "postgresql://ana:s%40cret@db.example:6543/chat?sslmode=require")
        #expect(full.host == "db.example")
        #expect(full.port == 6543)
        #expect(full.username == "ana")
        #expect(full.password == "s@cret")
        #expect(full.database == "chat")
        #expect(full.tls == .require)
        let short = try PostgresStore.Configuration(url: "postgres://127.0.0.1/chat")
        #expect(short.port == 5432 && short.username == "postgres" && short.password == nil && short.tls == .prefer)
        #expect(short.maxConcurrentCommits == 2)
        #expect(try PostgresStore.Configuration(url: "postgres://127.0.0.1/chat?commits=3").maxConcurrentCommits == 3)
        #expect(RedactedURL.string("postgres://ana:secret@h/db") == "postgres://ana:***@h/db")
    }

    @Test(arguments: ["mysql://h/db", "postgres://h", "postgres://h/", "postgres:///db", "postgres://h/db?sslmode=maybe", "postgres://h/db?pool=3", "postgres://h/db?commits=0", "postgres://h/db?commits=many"])
    func wrongURLsAreRefusedNamingTheExpectedForm(_ url: String) {
        #expect(throws: StoreError.self) { try PostgresStore.Configuration(url: url) }
        do {
            _ = try PostgresStore.Configuration(url: url)
        } catch {
            let message = (error as? StoreError)?.message ?? ""
            #expect(message.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE") || message.contains("sslmode=maybe") || message.contains("group commits from 1 to 16"), "\(message)")
        }
    }

    @Test func migrationsRunOnceAndRecordTheVersion() async throws {
        try await withDatabase { configuration in
            #expect(try await PostgresStore.migrate(configuration: configuration, logger: testLogger) == PostgresSchema.version)
            #expect(try await PostgresStore.migrate(configuration: configuration, logger: testLogger) == PostgresSchema.version)
            #expect(try await schemaVersion(configuration) == PostgresSchema.version)
            let store = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            let ana = try await store.makeUser("ana")
            try await store.close()
            let reopened = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            #expect(try await reopened.user(id: ana.id) == ana)
            try await reopened.close()
        }
    }

    @Test func aDatabaseWithANewerSchemaIsRefusedAndLeftAlone() async throws {
        try await withDatabase { configuration in
            try await PostgresStore.migrate(configuration: configuration, logger: testLogger)
            try await PostgresStore.withConnection(configuration: configuration, logger: testLogger) { connection in
                try await connection.query("UPDATE switchboard_schema SET version = 99", logger: testLogger)
            }
            let error = try #require(await openError(configuration))
            #expect(error.code == .unavailable)
            #expect(error.message.contains("schema version 99"))
            #expect(error.message.contains("upgrade Switchboard"))
            #expect(try await schemaVersion(configuration) == 99)
        }
    }

    @Test func aVersion3DatabaseMigratesToVersion4AndKeepsItsRows() async throws {
        try await withDatabase { configuration in
            try await PostgresStore.withConnection(configuration: configuration, logger: testLogger) { connection in
                #expect(try await PostgresSchema.migrate(connection, schema: nil, upTo: 3, logger: testLogger) == 3)
                for statement in [
                    "INSERT INTO users (id, username, username_key, display_name, display_name_key, created_at) VALUES ('u_ana', 'ana', 'ana', 'Ana', 'ana', 1)",
                    "INSERT INTO rooms (id, name, name_key, kind, creator_id, created_at, last_seq) VALUES ('r_one', 'One', 'one', 'group', 'u_ana', 1, 1)",
                    "INSERT INTO members (room_id, user_id, joined_at, read_seq) VALUES ('r_one', 'u_ana', 1, 1)",
                    "INSERT INTO messages (room_id, seq, id, user_id, content, created_at, client_id) VALUES ('r_one', 1, 'm_one', 'u_ana', 'hello', 2, 'c1')",
                ] {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: testLogger)
                }
            }
            #expect(try await schemaVersion(configuration) == 3)
            let store = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            #expect(try await schemaVersion(configuration) == 4)
            #expect(try await store.user(id: "u_ana")?.username == "ana")
            #expect(try await store.room(id: "r_one")?.lastSeq == 1)
            #expect(try await store.history(roomId: "r_one", after: nil, before: nil, limit: 10).messages.map(\.id) == ["m_one"])
            let repeated = try await store.append(NewMessage(roomId: "r_one", userId: "u_ana", content: "hello", clientId: "c1", replyTo: nil, meta: nil, now: 3))
            #expect(repeated.duplicate && repeated.message.id == "m_one")
            let next = try await store.append(NewMessage(roomId: "r_one", userId: "u_ana", content: "again", clientId: "c2", replyTo: nil, meta: nil, now: 4))
            #expect(!next.duplicate && next.message.seq == 2)
            try await store.close()
            let options = try await PostgresStore.withConnection(configuration: configuration, logger: testLogger) { connection in
                try await connection.query(
                    "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname IN ('rooms', 'members') ORDER BY relname", logger: testLogger
                ).collect().map { try $0.decode(String.self) }
            }
            #expect(options == ["fillfactor=50", "fillfactor=50"])
        }
    }

    /// A prepared statement keeps its first generic plan: planned on a new database, the look-up
    /// must still probe the index once the table has grown.
    @Test func theClientIdLookUpProbesItsIndexWhenPlannedOnAnEmptyTable() async throws {
        try await withDatabase { configuration in
            try await PostgresStore.migrate(configuration: configuration, logger: testLogger)
            let plan = try await PostgresStore.withConnection(configuration: configuration, logger: testLogger) { connection in
                try await connection.query("SET plan_cache_mode = force_generic_plan", logger: testLogger)
                try await connection.query(PostgresQuery(unsafeSQL: "PREPARE find_repeats (text[], text[], text[]) AS " + FindRepeats.sql), logger: testLogger)
                return try await connection.query("EXPLAIN EXECUTE find_repeats ('{r}', '{u}', '{c}')", logger: testLogger)
                    .collect().map { try $0.decode(String.self) }.joined(separator: "\n")
            }
            #expect(plan.contains("Index Scan using messages_client_key on messages"), "\(plan)")
            #expect(!plan.contains("Seq Scan"), "\(plan)")
        }
    }

    @Test func aRefusedConnectionSaysWhereAndWhatToCheck() async throws {
        var configuration = try TestDatabase.postgresServer()
        configuration.port = 1
        let error = try #require(await openError(configuration))
        #expect(error.message.contains("cannot connect to PostgreSQL at \(configuration.host):1"), "\(error.message)")
        #expect(error.message.contains("check that the server runs"))
    }

    @Test func aMissingDatabaseSaysHowToCreateIt() async throws {
        var configuration = try TestDatabase.postgresServer()
        configuration.database = "sb_missing_database"
        let error = try #require(await openError(configuration))
        #expect(error.message.contains("the database sb_missing_database does not exist"), "\(error.message)")
        #expect(error.message.contains("createdb -O \(configuration.username) sb_missing_database"))
    }

    @Test func aMissingRoleSaysHowToCreateIt() async throws {
        var configuration = try TestDatabase.postgresServer()
        configuration.username = "sb_nobody"
        let error = try #require(await openError(configuration))
        #expect(error.message.contains("the role sb_nobody does not exist"), "\(error.message)")
        #expect(error.message.contains("createuser sb_nobody"))
    }

    @Test func requiringTLSFromAServerWithoutItSaysSo() async throws {
        var configuration = try TestDatabase.postgresServer()
        configuration.tls = .require
        let error = try #require(await openError(configuration))
        #expect(error.message.contains("does not offer TLS"), "\(error.message)")
    }

    /// A URL of the strict cluster of `scripts/services/postgres.sh`, in a schema of its own.
    func strictServer(_ variable: String) throws -> PostgresStore.Configuration {
        guard let url = ProcessInfo.processInfo.environment[variable], !url.isEmpty else {
            throw TestFailure("\(variable) is not set: run the tests with scripts/test.sh, or `source scripts/services/postgres.sh` first")
        }
        var configuration = try PostgresStore.Configuration(url: url)
        configuration.schema = "sb_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        return configuration
    }

    func strictAuthority() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_POSTGRES_CA"], !path.isEmpty else {
            throw TestFailure("SWITCHBOARD_TEST_POSTGRES_CA is not set: run the tests with scripts/test.sh")
        }
        return path
    }

    /// Opens a store on `configuration`, writes and reads a user, closes it and drops its schema.
    func expectWorks(_ configuration: PostgresStore.Configuration) async throws {
        let store = try await PostgresStore.open(configuration: configuration, logger: testLogger)
        let ana = try await store.makeUser("ana")
        #expect(try await store.user(id: ana.id) == ana)
        try await store.close()
        try await PostgresStore.dropSchema(try #require(configuration.schema), server: configuration, logger: testLogger)
    }

    @Test func aQueryRightAfterOpeningLogsNoWarning() async throws {
        // The query can come before the pool's `run()` (it waits for it); postgres-nio then warned that
        // `run()` was not called, at every start of a server on PostgreSQL.
        let recorder = LogRecorder()
        try await withDatabase { configuration in
            for index in 0..<10 {
                let store = try await PostgresStore.open(configuration: configuration, logger: recorder.logger())
                _ = try await store.makeUser("user\(index)")
                try await store.close()
            }
        }
        #expect(recorder.all.filter { $0.hasPrefix("warning") }.isEmpty, "\(recorder.all.filter { $0.hasPrefix("warning") })")
    }

    @Test func aRefusedPasswordSaysToCheckIt() async throws {
        var configuration = try strictServer("SWITCHBOARD_TEST_POSTGRES_PASSWORD_URL")
        try await expectWorks(configuration)
        configuration.password = "wrong"
        let error = try #require(await openError(configuration))
        #expect(error.message.contains("PostgreSQL refused the password of user sb_password"), "\(error.message)")
        #expect(error.message.contains("check the password in the URL"))
        configuration.password = nil
        let missing = try #require(await openError(configuration))
        #expect(missing.message.contains("asks for a password for user sb_password; add it to the URL"), "\(missing.message)")
    }

    @Test func aServerThatRequiresTLSSaysToAskForIt() async throws {
        var configuration = try strictServer("SWITCHBOARD_TEST_POSTGRES_TLS_URL")
        configuration.tls = .disable
        let error = try #require(await openError(configuration))
        #expect(error.message.contains("requires TLS; add ?sslmode=require to the URL"), "\(error.message)")

        let url = try #require(ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_POSTGRES_TLS_URL"])
        var secured = try PostgresStore.Configuration(url: url + "?sslmode=require&sslrootcert=" + strictAuthority())
        secured.schema = configuration.schema
        #expect(secured.tls == .require)
        try await expectWorks(secured)
    }

    @Test func aCertificateNotTrustedSaysHowToTrustIt() async throws {
        var configuration = try strictServer("SWITCHBOARD_TEST_POSTGRES_TLS_URL")
        configuration.tls = .require
        let error = try #require(await openError(configuration))
        #expect(error.message.contains("sslrootcert="), "\(error.message)")
        configuration.rootCertificatePath = "/nonexistent/ca.crt"
        let unreadable = try #require(await openError(configuration))
        #expect(unreadable.message.contains("cannot read the certificates of sslrootcert=/nonexistent/ca.crt"), "\(unreadable.message)")
    }

    @Test func twoServersOnOneDatabaseNumberEachRoomWithoutGaps() async throws {
        try await withDatabase { configuration in
            let first = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            let second = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            let ana = try await first.makeUser("ana")
            let room = try await first.makeRoom("General", creator: ana)
            let count = 200
            let seqs = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<count {
                    let store = index % 2 == 0 ? first : second
                    group.addTask { try await store.send("m\(index)", in: room, from: ana).message.seq }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(seqs.sorted() == Array(1...count))
            #expect(try await second.room(id: room.id)?.lastSeq == count)
            #expect(try await first.history(roomId: room.id, after: nil, before: nil, limit: 500).messages.map(\.seq) == Array(1...count))
            try await first.close()
            try await second.close()
        }
    }

    @Test func anExportFromADatabaseThatDoesNotSortLikeCListsEveryRowOnce() async throws {
        // Ids mix cases; a database whose collation is not C sorts them otherwise than by byte.
        let server = try TestDatabase.postgresServer()
        var configuration = server
        configuration.database = "sb_test_icu_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await PostgresStore.withConnection(configuration: server, logger: testLogger) { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "CREATE DATABASE \(configuration.database) TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"),
                logger: testLogger)
        }
        do {
            let store = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            var userIds: Set<String> = []
            for index in 0..<60 {
                let user = try await store.makeUser("user\(index)")
                userIds.insert(user.id)
                _ = try await store.createToken(NewToken(userId: user.id, hash: Array(repeating: UInt8(index), count: 32), name: "t", kind: .api, now: 1, expiresAt: nil))
                _ = try await store.makeRoom("room\(index)", creator: user)
            }
            var exported: [TransferTable: [String]] = [:]
            try await StoreCopy.export(from: store, pageSize: 7) { line in
                guard let record = try? Wire.decode(TransferRecord.self, from: line) else { return }
                switch record {
                case .user(let user): exported[.users, default: []].append(user.id)
                case .token(let token): exported[.tokens, default: []].append(token.record.id)
                case .room(let room): exported[.rooms, default: []].append(room.id)
                default: break
                }
            }
            try await store.close()
            #expect(Set(exported[.users] ?? []).symmetricDifference(userIds).isEmpty)
            for table in [TransferTable.users, .tokens, .rooms] {
                let ids = exported[table] ?? []
                #expect(ids.count == 60, "\(table)")
                #expect(Set(ids).count == ids.count, "\(table) repeated")
            }
        } catch {
            try? await PostgresStore.dropDatabase(configuration.database, server: server, logger: testLogger)
            throw error
        }
        try await PostgresStore.dropDatabase(configuration.database, server: server, logger: testLogger)
    }
}

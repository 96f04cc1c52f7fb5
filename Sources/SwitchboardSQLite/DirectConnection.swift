import CSQLiteGatheredWAL
import SwitchboardStore
import VaporCSQLite

/// A SQLite connection driven synchronously through the C API, for the writer thread's group
/// commits.
///
/// sqlite-nio runs each statement as a job of its own on its thread pool (a hop there and back)
/// and prepares its text anew every time; a group commit of a dozen statements paid that a dozen
/// times. Here a whole batch is one job on the writer's thread, and each statement is prepared
/// once and kept: SQLite prepares a kept statement again by itself when the schema changes.
///
/// Not thread-safe (it is opened without SQLite's mutex): use it from one thread at a time, the
/// writer's single-thread pool.
final class DirectConnection: @unchecked Sendable {
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    /// Opens the database file at `path`, which must exist already.
    ///
    /// With `gathersLogWrites`, the connection writes each commit's frames of the write-ahead log
    /// in a few system calls rather than two a page (`CSQLiteGatheredWAL`); only for a connection
    /// whose commits sync the log (`synchronous = FULL`), which is when the gathered writes go out.
    init(path: String, gathersLogWrites: Bool = false) throws {
        var vfs: UnsafePointer<CChar>?
        if gathersLogWrites {
            let registered = switchboard_gathered_wal_register()
            guard registered == SQLITE_OK else {
                throw StoreError(.unavailable, "cannot open \(path) for writing: SQLite has no default VFS to gather the log's writes over (\(String(cString: sqlite_nio_sqlite3_errstr(registered))))")
            }
            vfs = switchboard_gathered_wal_vfs_name
        }
        var handle: OpaquePointer?
        let status = sqlite_nio_sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, vfs)
        guard status == SQLITE_OK, let handle else {
            let reason = handle.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? String(cString: sqlite_nio_sqlite3_errstr(status))
            sqlite_nio_sqlite3_close(handle)
            throw StoreError(.unavailable, "cannot open \(path) for writing: \(reason)")
        }
        self.handle = handle
    }

    deinit {
        close()
    }

    /// Runs statements that return nothing, such as pragmas, without keeping them.
    func execute(_ sql: String) throws {
        try check(sqlite_nio_sqlite3_exec(try open(), sql, nil, nil, nil), sql)
    }

    /// Runs `body` with the statement for `sql`, prepared on first use and kept; its bindings and
    /// its place in the results are reset afterwards, whether `body` finished or threw.
    func withStatement<T>(_ sql: String, _ body: (inout Statement) throws -> T) throws -> T {
        let prepared = try statement(sql)
        defer {
            sqlite_nio_sqlite3_reset(prepared)
            sqlite_nio_sqlite3_clear_bindings(prepared)
        }
        var statement = Statement(handle: prepared, connection: self, sql: sql)
        return try body(&statement)
    }

    /// Runs `body` between BEGIN IMMEDIATE and COMMIT, rolling back when anything throws, so that
    /// nothing of it is stored unless all of it is.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try withStatement("BEGIN IMMEDIATE") { try $0.run() }
        do {
            let value = try body()
            try withStatement("COMMIT") { try $0.run() }
            return value
        } catch {
            // A failed COMMIT may have rolled back by itself already.
            if let handle, sqlite_nio_sqlite3_get_autocommit(handle) == 0 {
                _ = try? withStatement("ROLLBACK") { try $0.run() }
            }
            throw error
        }
    }

    /// Finalizes the kept statements and closes the connection; later calls throw. Closing twice
    /// does nothing.
    func close() {
        for statement in statements.values { sqlite_nio_sqlite3_finalize(statement) }
        statements = [:]
        if let handle { sqlite_nio_sqlite3_close_v2(handle) }
        handle = nil
    }

    /// How many statements are kept, for tests.
    var preparedCount: Int { statements.count }

    /// For tests: the writes SQLite made to the write-ahead log and those that reached the file,
    /// when the log is open and its writes are gathered; nil otherwise.
    func logWriteCounts() -> (writes: Int, flushes: Int)? {
        guard let handle else { return nil }
        var file: UnsafeMutablePointer<sqlite3_file>?
        guard sqlite_nio_sqlite3_file_control(handle, "main", SQLITE_FCNTL_JOURNAL_POINTER, &file) == SQLITE_OK, let file else { return nil }
        var writes: sqlite3_int64 = 0
        var flushes: sqlite3_int64 = 0
        guard switchboard_gathered_wal_counts(file, &writes, &flushes) != 0 else { return nil }
        return (Int(writes), Int(flushes))
    }

    private func open() throws -> OpaquePointer {
        guard let handle else { throw StoreError(.unavailable, "the store is closed") }
        return handle
    }

    private func statement(_ sql: String) throws -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        var statement: OpaquePointer?
        try check(sqlite_nio_sqlite3_prepare_v3(try open(), sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil), sql)
        guard let statement else { throw StoreError(.unavailable, "SQLite prepared nothing for \(sql)") }
        statements[sql] = statement
        return statement
    }

    fileprivate func check(_ status: Int32, _ sql: String) throws {
        guard status != SQLITE_OK, status != SQLITE_ROW, status != SQLITE_DONE else { return }
        let reason = handle.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? String(cString: sqlite_nio_sqlite3_errstr(status))
        throw StoreError(.unavailable, "SQLite failed (\(status)): \(reason), running \(sql)")
    }

    /// A kept statement while it runs: bind by position (from 1), step, read columns (from 0).
    struct Statement {
        fileprivate let handle: OpaquePointer
        fileprivate let connection: DirectConnection
        fileprivate let sql: String

        mutating func bind(_ index: Int32, _ value: Int) throws {
            try connection.check(sqlite_nio_sqlite3_bind_int64(handle, index, Int64(value)), sql)
        }

        mutating func bind(_ index: Int32, _ value: String?) throws {
            guard var value else { return try connection.check(sqlite_nio_sqlite3_bind_null(handle, index), sql) }
            let status =
                value.isEmpty
                ? sqlite_nio_sqlite3_bind_text64(handle, index, "", 0, Self.transient, UInt8(SQLITE_UTF8))
                : value.withUTF8 { bytes in
                    sqlite_nio_sqlite3_bind_text64(
                        handle, index, UnsafeRawPointer(bytes.baseAddress)?.assumingMemoryBound(to: CChar.self), UInt64(bytes.count),
                        Self.transient, UInt8(SQLITE_UTF8))
                }
            try connection.check(status, sql)
        }

        /// Steps once: true when a row is there to read, false when the statement is done, and
        /// then ready to be bound and run again.
        mutating func step() throws -> Bool {
            let status = sqlite_nio_sqlite3_step(handle)
            try connection.check(status, sql)
            if status == SQLITE_ROW { return true }
            sqlite_nio_sqlite3_reset(handle)
            return false
        }

        /// Steps to the end, for statements that return no rows.
        mutating func run() throws {
            while try step() {}
        }

        func isNull(_ column: Int32) -> Bool {
            sqlite_nio_sqlite3_column_type(handle, column) == SQLITE_NULL
        }

        func integer(_ column: Int32) -> Int {
            Int(sqlite_nio_sqlite3_column_int64(handle, column))
        }

        func text(_ column: Int32) -> String {
            guard let bytes = sqlite_nio_sqlite3_column_text(handle, column) else { return "" }
            return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(sqlite_nio_sqlite3_column_bytes(handle, column))), as: UTF8.self)
        }

        func optionalText(_ column: Int32) -> String? {
            isNull(column) ? nil : text(column)
        }

        func optionalInteger(_ column: Int32) -> Int? {
            isNull(column) ? nil : integer(column)
        }

        /// SQLite copies the bound text (`SQLITE_TRANSIENT`): Swift's buffer lives only for the call.
        private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    }
}

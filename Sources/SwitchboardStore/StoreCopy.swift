import SwitchboardProtocol

/// Copies a whole store as JSON lines, and back: `switchboard export` and `switchboard import`.
///
/// The first line is a ``Header`` (format, version, row counts); then one ``TransferRecord`` per
/// line, table after table in ``TransferTable/allCases`` order; then (from version 2) an
/// ``End`` with the rows written, so that a copy cut short is known for one. Both directions hold
/// one page of records at a time, whatever the size of the database.
///
/// ```swift
/// try await StoreCopy.export(from: sqlite) { line in output.write(line + "\n") }
/// try await StoreCopy.import(into: postgres) { input.readLine() }
/// ```
public enum StoreCopy {
    /// The first line of a copy.
    public struct Header: Codable, Sendable, Hashable {
        /// Always `switchboard-export`: what the file is.
        public var format: String
        /// The version of the line format; 1.
        public var version: Int
        /// Rows per table (by ``TransferTable`` raw value) when the copy began (a database in use
        /// may change while it is copied).
        public var counts: [String: Int]
    }

    /// The last line of a copy (from version 2).
    public struct End: Codable, Sendable, Hashable {
        /// Always `switchboard-export-end`.
        public var format: String
        /// Rows per table (by ``TransferTable`` raw value) written.
        public var counts: [String: Int]
    }

    /// The version of the line format this program writes and reads (2: with an ``End`` line).
    public static let formatVersion = 2

    /// How far a copy has come: `done` rows of `total` in `table`.
    public struct Progress: Sendable, Hashable {
        public var table: TransferTable
        public var done: Int
        public var total: Int
    }

    /// Writes every row of `store`, a page of `pageSize` at a time, through `write` (one line per
    /// call, without its newline). Returns the number of rows per table written.
    @discardableResult
    public static func export(
        from store: any TransferableStore, pageSize: Int = 1_000, progress: (Progress) -> Void = { _ in },
        write: (String) async throws -> Void
    ) async throws -> [TransferTable: Int] {
        let counts = try await store.transferCounts()
        let header = Header(format: "switchboard-export", version: formatVersion, counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }))
        try await write(try Wire.encodeString(header))
        var written: [TransferTable: Int] = [:]
        for table in TransferTable.allCases {
            var last: TransferRecord?
            var done = 0
            progress(Progress(table: table, done: 0, total: counts[table] ?? 0))
            while true {
                let page = try await store.exportPage(table, after: last, limit: max(pageSize, 1))
                guard let final = page.last else { break }
                for record in page { try await write(try Wire.encodeString(record)) }
                done += page.count
                last = final
                progress(Progress(table: table, done: done, total: max(counts[table] ?? 0, done)))
            }
            written[table] = done
        }
        try await write(try Wire.encodeString(End(format: "switchboard-export-end", counts: Dictionary(uniqueKeysWithValues: written.map { ($0.key.rawValue, $0.value) }))))
        return written
    }

    /// Reads a copy line by line from `nextLine` (nil at the end) and stores it in `store`, which
    /// must be empty, `batchSize` records per transaction. Returns the rows per table stored.
    ///
    /// Throws ``StoreError`` `.conflict` for a store that already holds users, `.unavailable`
    /// naming the line for a line that is not part of a copy, and `.unavailable` for a copy
    /// without its end line (cut short) or with other rows than it counts.
    @discardableResult
    public static func `import`(
        into store: any TransferableStore, batchSize: Int = 1_000, progress: (Progress) -> Void = { _ in },
        nextLine: () async throws -> String?
    ) async throws -> [TransferTable: Int] {
        let existing = try await store.transferCounts()
        guard existing.values.allSatisfy({ $0 == 0 }) else {
            let held = TransferTable.allCases.compactMap { table in existing[table].flatMap { $0 > 0 ? "\($0) \(table.rawValue)" : nil } }
            throw StoreError(.conflict, "the destination already holds data (\(held.joined(separator: ", "))); import into a new, empty database")
        }
        guard let first = try await nextLine() else { throw StoreError(.unavailable, "the copy is empty: no header line") }
        guard let header = try? Wire.decode(Header.self, from: first), header.format == "switchboard-export" else {
            throw StoreError(.unavailable, "line 1 is not the header of a switchboard export")
        }
        guard header.version <= formatVersion else {
            throw StoreError(.unavailable, "the copy has format version \(header.version), newer than this program's \(formatVersion); upgrade Switchboard")
        }
        var lineNumber = 1
        var end: End?
        var batch: [TransferRecord] = []
        var stored: [TransferTable: Int] = [:]
        var table = TransferTable.allCases[0]
        func flush() async throws {
            guard !batch.isEmpty else { return }
            try await store.importRecords(batch)
            batch = []
            progress(Progress(table: table, done: stored[table] ?? 0, total: max(header.counts[table.rawValue] ?? 0, stored[table] ?? 0)))
        }
        while let line = try await nextLine() {
            lineNumber += 1
            if line.isEmpty { continue }
            guard end == nil else { throw StoreError(.unavailable, "line \(lineNumber) follows the end of the copy") }
            let record: TransferRecord
            do {
                record = try Wire.decode(TransferRecord.self, from: line)
            } catch {
                if let last = try? Wire.decode(End.self, from: line), last.format == "switchboard-export-end" {
                    end = last
                    continue
                }
                throw StoreError(.unavailable, "line \(lineNumber) is not a record of a switchboard export", cause: error)
            }
            if record.table != table {
                // Tables come in order; a record of an earlier table would refer to rows not yet stored.
                let order = TransferTable.allCases
                guard order.firstIndex(of: record.table)! > order.firstIndex(of: table)! else {
                    throw StoreError(.unavailable, "line \(lineNumber): \(record.table.rawValue) after \(table.rawValue); the copy is out of order")
                }
                try await flush()
                table = record.table
            }
            batch.append(record)
            stored[table, default: 0] += 1
            if batch.count >= max(batchSize, 1) { try await flush() }
        }
        try await flush()
        // Version 1 copies have no end line: nothing to check them against.
        guard header.version >= 2 else { return stored }
        guard let end else {
            throw StoreError(
                .unavailable,
                "the copy ends early, at line \(lineNumber), before its end line (an export cut short?); what it held is stored: drop this database, export again and import the whole copy")
        }
        for table in TransferTable.allCases where (stored[table] ?? 0) != (end.counts[table.rawValue] ?? 0) {
            throw StoreError(
                .unavailable,
                "the copy holds \(stored[table] ?? 0) \(table.rawValue) where its end line counts \(end.counts[table.rawValue] ?? 0); export again and import into a new database")
        }
        return stored
    }
}

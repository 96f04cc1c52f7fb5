import SQLiteNIO
import SwitchboardProtocol

extension SQLiteStore {
    /// Public group rooms whose name contains `query` in any case, by name; `%` and `_` in the
    /// query match only themselves.
    public func publicRooms(query: String, limit: Int) async throws -> [Room] {
        let pattern = Self.containsPattern(query)
        return try await read { connection in
            try await connection.query(
                #"""
                SELECT \#(Columns.room) FROM rooms r
                WHERE r.kind = 'group' AND r.is_public = 1 AND r.name_key LIKE ?1 ESCAPE '\'
                ORDER BY r.name_key, r.id LIMIT ?2
                """#, [.text(pattern), .integer(max(limit, 0))]
            ).map { try Decode.room($0) }
        }
    }

    /// A LIKE pattern (with `\` as escape) matching any text that contains `query` without regard to case.
    static func containsPattern(_ query: String) -> String {
        var pattern = "%"
        for character in caseKey(query) {
            if character == "%" || character == "_" || character == "\\" { pattern.append("\\") }
            pattern.append(character)
        }
        pattern.append("%")
        return pattern
    }
}

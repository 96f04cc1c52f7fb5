// The archive's configuration, as the `config` of its plugin entry in the agent's YAML.

/// What the archive plugin archives, where, and for how long.
///
/// ```yaml
/// plugins:
///   - name: postgres-archive
///     config:
///       url: postgres://archive:secret@127.0.0.1/team   # required
///       schema: switchboard_archive                      # the archive's own tables
///       rooms: [general, ops]                            # default: every room the bot follows
///       language: english                                # text search configuration
///       batchSize: 200
///       retention: {maxAgeDays: 365, rooms: {random: 30}}
/// ```
public struct ArchiveConfiguration: Sendable, Decodable {
    /// The database, as `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=disable|prefer|require]`. Required.
    public var url: String
    /// The PostgreSQL schema holding the archive's tables, created when missing. Default `switchboard_archive`.
    public var schema: String = "switchboard_archive"
    /// Room ids or names to archive; nil (the default) archives every room the bot follows.
    public var rooms: [String]?
    /// PostgreSQL's text search configuration for stemming and stop words (`english`, `german`,
    /// `simple`, … as `\dF` lists them). Default `english`.
    public var language: String = "english"
    /// The most messages written in one transaction, and asked of the history API at once (the
    /// server answers at most 200). Default 200.
    public var batchSize: Int = 200
    /// How long messages are kept. Default: for ever.
    public var retention = Retention()

    /// How long messages are kept: an age for every room, and ages for some rooms by id or name.
    public struct Retention: Sendable, Decodable, Hashable {
        /// The age in days after which a message is deleted from the archive, in every room
        /// without an age of its own. Default nil: kept for ever.
        public var maxAgeDays: Int?
        /// Ages in days by room id or name, before `maxAgeDays`. Default none.
        public var rooms: [String: Int] = [:]
        /// How often the retention job runs, in minutes. Default 60.
        public var everyMinutes: Int = 60

        /// A retention rule.
        public init(maxAgeDays: Int? = nil, rooms: [String: Int] = [:], everyMinutes: Int = 60) {
            self.maxAgeDays = maxAgeDays
            self.rooms = rooms
            self.everyMinutes = everyMinutes
        }

        /// Whether anything is ever deleted.
        public var isEnabled: Bool { maxAgeDays != nil || !rooms.isEmpty }

        /// The age in days for a room, by id first, then by name (without regard to case).
        public func maxAgeDays(roomId: String, name: String) -> Int? {
            rooms[roomId] ?? rooms.first { $0.key.lowercased() == name.lowercased() }?.value ?? maxAgeDays
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            maxAgeDays = try container.decodeIfPresent(Int.self, forKey: .maxAgeDays)
            rooms = try container.decodeIfPresent([String: Int].self, forKey: .rooms) ?? [:]
            everyMinutes = try container.decodeIfPresent(Int.self, forKey: .everyMinutes) ?? 60
            if let days = maxAgeDays, days < 1 {
                throw DecodingError.dataCorruptedError(forKey: .maxAgeDays, in: container, debugDescription: "must be at least 1 day (leave it out to keep messages for ever)")
            }
            if let (room, _) = rooms.first(where: { $0.value < 1 }) {
                throw DecodingError.dataCorruptedError(forKey: .rooms, in: container, debugDescription: "the age of \(room) must be at least 1 day")
            }
            guard (1...10_080).contains(everyMinutes) else {
                throw DecodingError.dataCorruptedError(forKey: .everyMinutes, in: container, debugDescription: "must be between 1 and 10080 (a week)")
            }
        }

        private enum Key: String, CodingKey { case maxAgeDays, rooms, everyMinutes }
    }

    /// A configuration with defaults for everything but the database.
    public init(url: String, schema: String = "switchboard_archive", rooms: [String]? = nil, language: String = "english", batchSize: Int = 200, retention: Retention = Retention()) {
        self.url = url
        self.schema = schema
        self.rooms = rooms
        self.language = language
        self.batchSize = batchSize
        self.retention = retention
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        url = try container.decode(String.self, forKey: .url)
        schema = try container.decodeIfPresent(String.self, forKey: .schema) ?? "switchboard_archive"
        rooms = try container.decodeIfPresent([String].self, forKey: .rooms)
        language = try container.decodeIfPresent(String.self, forKey: .language) ?? "english"
        batchSize = try container.decodeIfPresent(Int.self, forKey: .batchSize) ?? 200
        retention = try container.decodeIfPresent(Retention.self, forKey: .retention) ?? Retention()
        do {
            _ = try DatabaseAddress(url: url)
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .url, in: container, debugDescription: "\(error)")
        }
        guard ArchiveDatabase.isIdentifier(schema) else {
            throw DecodingError.dataCorruptedError(forKey: .schema, in: container, debugDescription: "\(schema) is not a plain name: use lower-case letters, digits and _")
        }
        guard ArchiveDatabase.isIdentifier(language) else {
            throw DecodingError.dataCorruptedError(forKey: .language, in: container, debugDescription: "\(language) is not a text search configuration name such as english or simple")
        }
        guard (1...10_000).contains(batchSize) else {
            throw DecodingError.dataCorruptedError(forKey: .batchSize, in: container, debugDescription: "must be between 1 and 10000")
        }
    }

    private enum Key: String, CodingKey { case url, schema, rooms, language, batchSize, retention }

    /// Whether a room is archived.
    func archives(roomId: String, name: String) -> Bool {
        guard let rooms else { return true }
        return rooms.contains { $0 == roomId || $0.lowercased() == name.lowercased() }
    }
}

import ArgumentParser
import Foundation
import PostgresArchive
import SwitchboardProtocol

/// `switchboard archive …`: reads the archive the `postgres-archive` plugin writes.
struct ArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Search and export the archive that the postgres-archive agent plugin keeps in PostgreSQL.",
        subcommands: [ArchiveSearch.self, ArchiveExport.self]
    )
}

/// Where the archive is.
struct ArchiveOptions: ParsableArguments {
    @Option(help: "The archive's PostgreSQL database, postgres://USER:PASSWORD@HOST:PORT/DATABASE (env: SWITCHBOARD_ARCHIVE_URL).")
    var url: String = ProcessInfo.processInfo.environment["SWITCHBOARD_ARCHIVE_URL"] ?? ""

    @Option(help: "The archive's schema, as the plugin's `schema`.")
    var schema: String = "switchboard_archive"

    func withArchive<Result: Sendable>(_ body: @Sendable (ArchiveDatabase) async throws -> Result) async throws -> Result {
        guard !url.isEmpty else { throw ValidationError("give the archive's database with --url postgres://… (or SWITCHBOARD_ARCHIVE_URL)") }
        var logger = makeLogger()
        // postgres-nio warns of a lease asked before its pool started, which it then serves: noise here.
        logger.logLevel = max(logger.logLevel, .error)
        do {
            return try await ArchiveDatabase.withDatabase(url: url, schema: schema, logger: logger, body)
        } catch let error as ArchiveError {
            throw Failure(description: error.description)
        }
    }
}

/// A time on the command line: `2026-11-30`, `2026-11-30T18:00`, `2026-11-30T18:00:00Z` (local time without a zone).
struct TimeArgument: ExpressibleByArgument, Sendable {
    let date: Date

    init?(argument: String) {
        let formats = ["yyyy-MM-dd'T'HH:mm:ssXXXXX", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd"]
        for format in formats {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = .current
            formatter.dateFormat = format
            if let date = formatter.date(from: argument) {
                self.date = date
                return
            }
        }
        return nil
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

struct ArchiveSearch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Full-text search, best matches first, with the matches marked **like this**.",
        discussion: """
            switchboard archive search 'deploy failed' --url postgres://archive@127.0.0.1/team
            switchboard archive search '"release notes" -draft' --room ops --user ana --from 2026-11-01 --limit 5
            The query is websearch syntax: words, "a phrase", or, -excluded.
            """
    )

    @OptionGroup var archive: ArchiveOptions

    @Argument(help: "What to look for.")
    var query: String

    @Option(help: "Only this room (id or name).")
    var room: String?

    @Option(help: "Only this author (id or username).")
    var user: String?

    @Option(help: "From this time on (2026-11-30, 2026-11-30T18:00, local time unless a zone is given).")
    var from: TimeArgument?

    @Option(help: "Before this time.")
    var to: TimeArgument?

    @Option(help: "The most results, 1 to 1000.")
    var limit: Int = 20

    @Flag(help: "One JSON object per result.")
    var json = false

    func run() async throws {
        let query = SearchQuery(text: query, room: room, user: user, from: from?.date, to: to?.date, limit: limit)
        let hits = try await archive.withArchive { try await $0.search(query) }
        if json {
            for hit in hits {
                let object: [String: Any] = [
                    "roomId": hit.roomId, "room": hit.roomName, "seq": hit.seq, "messageId": hit.messageId, "userId": hit.userId,
                    "username": hit.username, "createdAt": hit.createdAt, "rank": hit.rank, "snippet": hit.snippet,
                ]
                print(TerminalText.printableJSON(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)))
            }
            return
        }
        if hits.isEmpty { print("nothing found") }
        for hit in hits {
            let time = Date(timeIntervalSince1970: Double(hit.createdAt) / 1000).formatted(date: .numeric, time: .shortened)
            let snippet = hit.snippet.split(whereSeparator: \.isNewline).joined(separator: " ")
            print(TerminalText.printable("#\(hit.roomName) #\(hit.seq) · \(hit.username) · \(time)\n\(snippet)", indentingLines: true))
        }
    }
}

extension ExportFormat: ExpressibleByArgument {}

struct ArchiveExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write one room's archive as JSON lines, one HTML file, or plain text.",
        discussion: """
            switchboard archive export --room general --format html --output general.html --url postgres://archive@127.0.0.1/team
            switchboard archive export --room general --from 2026-11-01 --to 2026-12-01 --format jsonl > november.jsonl
            """
    )

    @OptionGroup var archive: ArchiveOptions

    @Option(help: "The room (id or name).")
    var room: String

    @Option(help: "From this time on.")
    var from: TimeArgument?

    @Option(help: "Before this time.")
    var to: TimeArgument?

    @Option(help: "jsonl, html or txt.")
    var format: ExportFormat = .jsonl

    @Option(help: "The file to write (standard output by default).")
    var output: String?

    func run() async throws {
        let handle: FileHandle
        if let output {
            guard FileManager.default.createFile(atPath: output, contents: nil) else { throw Failure(description: "cannot create \(output): check the folder exists and is writable") }
            handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        } else {
            handle = FileHandle.standardOutput
        }
        let (room, from, to, format) = (self.room, self.from?.date, self.to?.date, self.format)
        let count = try await archive.withArchive { archive in
            let found = try await archive.findRoom(room)
            try handle.write(contentsOf: Data(format.header(roomName: found.name, roomId: found.id).utf8))
            var count = 0
            try await archive.exportMessages(roomId: found.id, from: from, to: to) { message in
                try handle.write(contentsOf: Data(format.entry(message).utf8))
                count += 1
            }
            try handle.write(contentsOf: Data(format.footer.utf8))
            return count
        }
        if let output {
            try handle.close()
            FileHandle.standardError.write(Data("\(count) messages written to \(output)\n".utf8))
        }
    }
}

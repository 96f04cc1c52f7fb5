import Foundation
import SwitchboardProtocol
import Testing

@testable import PostgresArchive

@Suite(.timeLimit(.minutes(1))) struct SearchTests {
    static let hour = 3_600_000
    static let start = 1_780_000_000_000

    /// Two rooms, two authors, messages an hour apart.
    static func fill(_ archive: ArchiveDatabase) async throws {
        let users = [User(id: "u-ana", username: "ana", displayName: "Ana", isBot: false), User(id: "u-bo", username: "bo", displayName: "Bo", isBot: false)]
        try await archive.write(
            room: room("r-ops", name: "ops"),
            messages: [
                message(1, room: "r-ops", user: "u-ana", "the deploy failed again, the deploy failed on the database migration", at: start),
                message(2, room: "r-ops", user: "u-bo", "lunch anyone?", at: start + hour),
                message(3, room: "r-ops", user: "u-bo", "the deploy is done", at: start + 2 * hour),
            ], users: users, upTo: 3)
        try await archive.write(
            room: room("r-dev", name: "dev"),
            messages: [
                message(1, room: "r-dev", user: "u-ana", "why has the deploy failed", at: start + 3 * hour),
                message(2, room: "r-dev", user: "u-bo", "failed tests are not a failed deploy", at: start + 4 * hour),
            ], users: users, upTo: 2)
    }

    @Test func resultsAreRankedAndHighlighted() async throws {
        try await TestPostgres.withArchive { archive in
            try await Self.fill(archive)
            let hits = try await archive.search(SearchQuery(text: "deploy failed"))
            #expect(hits.count == 3, "every message with both words, and not the one with only one")
            #expect(hits.first?.roomId == "r-ops" && hits.first?.seq == 1, "the message that says it twice ranks first")
            #expect(hits.map(\.rank) == hits.map(\.rank).sorted(by: >))
            #expect(hits.first?.snippet.contains("**deploy**") == true)
            #expect(hits.first?.username == "ana" && hits.first?.roomName == "ops")
        }
    }

    @Test func websearchSyntaxWorks() async throws {
        try await TestPostgres.withArchive { archive in
            try await Self.fill(archive)
            #expect(try await archive.search(SearchQuery(text: "\"deploy is done\"")).map(\.seq) == [3])
            #expect(try await archive.search(SearchQuery(text: "deploy -failed")).map(\.seq) == [3])
            #expect(Set(try await archive.search(SearchQuery(text: "lunch or tests")).map(\.roomId)) == ["r-ops", "r-dev"])
            #expect(try await archive.search(SearchQuery(text: "zebra")).isEmpty)
        }
    }

    @Test func filtersNarrowTheResults() async throws {
        try await TestPostgres.withArchive { archive in
            try await Self.fill(archive)
            #expect(Set(try await archive.search(SearchQuery(text: "deploy", room: "dev")).map(\.roomId)) == ["r-dev"])
            #expect(Set(try await archive.search(SearchQuery(text: "deploy", room: "r-ops")).map(\.roomId)) == ["r-ops"])
            #expect(Set(try await archive.search(SearchQuery(text: "deploy", user: "bo")).map(\.username)) == ["bo"])
            #expect(Set(try await archive.search(SearchQuery(text: "deploy", user: "u-ana")).map(\.username)) == ["ana"])
            let from = Date(timeIntervalSince1970: Double(Self.start + 2 * Self.hour) / 1000)
            let to = Date(timeIntervalSince1970: Double(Self.start + 4 * Self.hour) / 1000)
            let window = try await archive.search(SearchQuery(text: "deploy", from: from, to: to))
            #expect(Set(window.map { "\($0.roomId)#\($0.seq)" }) == ["r-ops#3", "r-dev#1"], "from is included, to is not")
            #expect(try await archive.search(SearchQuery(text: "deploy", limit: 2)).count == 2)
            let onlyDev = try await archive.search(SearchQuery(text: "deploy", onlyRooms: ["r-dev"]))
            #expect(!onlyDev.isEmpty && onlyDev.allSatisfy { $0.roomId == "r-dev" })
            #expect(try await archive.search(SearchQuery(text: "deploy", onlyRooms: [])).isEmpty, "no room allowed, nothing found")
        }
    }

    @Test func badQueriesAreRefused() async throws {
        try await TestPostgres.withArchive { archive in
            await #expect(throws: ArchiveError.self) { try await archive.search(SearchQuery(text: "  ")) }
            await #expect(throws: ArchiveError.self) { try await archive.search(SearchQuery(text: "x", limit: 0)) }
            // Operators to_tsquery would refuse are read as plain words by websearch_to_tsquery.
            let symbols = try await archive.search(SearchQuery(text: "zebra & | ! ("))
            #expect(symbols.isEmpty)
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct ExportTests {
    static let hostile = "<script>alert('x')</script> & \"quotes\""

    static func export(_ format: ExportFormat) async throws -> String {
        try await TestPostgres.withArchive { archive in
            let meta: JSONValue = ["bridge": ["network": "libera", "nick": "<b>nick</b>"]]
            try await archive.write(
                room: room("r-1", name: "<i>room</i>"),
                messages: [
                    message(1, room: "r-1", user: "u-1", hostile, at: 1_780_000_000_123),
                    message(2, room: "r-1", user: "u-1", "line one\nline two", at: 1_780_000_060_000, meta: meta),
                ],
                users: [User(id: "u-1", username: "ana", displayName: "Ana <3", isBot: false)], upTo: 2)
            let found = try await archive.findRoom("<i>room</i>")
            var output = format.header(roomName: found.name, roomId: found.id)
            try await archive.exportMessages(roomId: found.id) { output += format.entry($0) }
            return output + format.footer
        }
    }

    @Test func jsonLinesKeepTheContentExactly() async throws {
        let output = try await Self.export(.jsonl)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 2)
        let first = try JSONDecoder().decode(ArchivedMessage.self, from: Data(lines[0].utf8))
        #expect(first.content == Self.hostile)
        #expect(first.createdAt == 1_780_000_000_123)
        let second = try JSONDecoder().decode(ArchivedMessage.self, from: Data(lines[1].utf8))
        #expect(second.content == "line one\nline two")
        #expect(second.meta?.contains("libera") == true)
    }

    @Test func htmlEscapesEverythingAndShowsLocalTimes() async throws {
        let output = try await Self.export(.html)
        #expect(output.hasPrefix("<!DOCTYPE html>"))
        #expect(!output.contains("<script>alert"), "the message's script is text")
        #expect(output.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;"))
        #expect(output.contains("&lt;i&gt;room&lt;/i&gt;") && !output.contains("<i>room</i>"))
        #expect(output.contains("Ana &lt;3") && output.contains("&lt;b&gt;nick&lt;/b&gt;@libera"))
        #expect(output.components(separatedBy: "<script>").count == 2, "one script: the one that shows local times")
        #expect(output.contains("<time datetime=\"2026-05-28T20:26:40.123Z\">"))
        #expect(output.contains("toLocaleString()"))
        #expect(!output.contains("src=") && !output.contains("href="), "one file: nothing loaded from elsewhere")
    }

    @Test func textHasOneLinePerMessage() async throws {
        let output = try await Self.export(.txt)
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[0] == "# <i>room</i> (r-1)")
        #expect(lines[1] == "[2026-05-28T20:26:40.123Z] #1 <ana> \(Self.hostile)")
        #expect(lines[2] == "[2026-05-28T20:27:40.000Z] #2 <<b>nick</b>@libera (via ana)> line one")
        #expect(lines[3] == "    line two", "a continuation line is indented")
    }
}

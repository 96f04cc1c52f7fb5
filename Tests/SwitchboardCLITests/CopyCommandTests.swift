import Foundation
import SwitchboardTesting
import Testing

@Suite("export and import as commands: a copy is a whole file or none", .timeLimit(.minutes(1)))
struct CopyCommandTests {
    @Test("export --output writes the whole copy, and a failed export leaves no file behind")
    func exportWritesAWholeFileOrNone() async throws {
        let database = try TestServer.temporaryDatabasePath()
        let folder = (database as NSString).deletingLastPathComponent
        let added = try await Command.run(["users", "add", "ana", "--bot", "--database", database])
        #expect(added.status == 0, "\(added.errors)")

        let copy = folder + "/copy.jsonl"
        let exported = try await Command.run(["export", "--database", database, "--output", copy])
        #expect(exported.status == 0, "\(exported.errors)")
        let lines = try String(contentsOfFile: copy, encoding: .utf8).split(separator: "\n")
        #expect(lines.first?.contains("switchboard-export") == true)
        #expect(lines.contains { $0.contains(#""username":"ana""#) }, "\(lines)")
        #expect(!FileManager.default.fileExists(atPath: copy + ".partial"))

        // Nothing listens on port 1: the export fails before writing a line.
        let failed = folder + "/failed.jsonl"
        let refused = try await Command.run(["export", "--database", "postgres://switchboard@127.0.0.1:1/none", "--output", failed])
        #expect(refused.status != 0)
        #expect(!FileManager.default.fileExists(atPath: failed))
        #expect(!FileManager.default.fileExists(atPath: failed + ".partial"))

        let into = folder + "/imported.db"
        let imported = try await Command.run(["import", "--database", into, "--input", copy])
        #expect(imported.status == 0, "\(imported.errors)")
        let users = try await Command.run(["users", "list", "--database", into])
        #expect(users.output.contains("ana"), "\(users.output) \(users.errors)")
    }
}

import Foundation
import SwitchboardTesting
import Testing

@Suite("Hardening: numbers given to the CLI are checked, never trapped on", .timeLimit(.minutes(1)))
struct HardeningFlagsTests {
    @Test("tokens add --expires-in out of range is a usage error naming the flag")
    func tokenLifetime() async throws {
        let database = TestServer.temporaryDatabasePath()
        let added = try await Command.run(["users", "add", "bot", "--bot", "--database", database])
        #expect(added.status == 0, "\(added.errors)")
        for value in ["10000000000000000", "0"] {
            let result = try await Command.run(["tokens", "add", "bot", "--expires-in=\(value)", "--database", database])
            #expect(result.status == 64, "--expires-in \(value): status \(result.status), \(result.errors)")
            #expect(result.errors.contains("--expires-in must be 1 to"), "\(result.errors)")
        }
        let fine = try await Command.run(["tokens", "add", "bot", "--expires-in", "3600", "--database", database])
        #expect(fine.status == 0, "\(fine.errors)")
    }
}

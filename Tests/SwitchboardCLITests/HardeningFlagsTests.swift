import Foundation
import SwitchboardTesting
import Testing

@Suite("Hardening: numbers given to the CLI are checked, never trapped on", .timeLimit(.minutes(1)))
struct HardeningFlagsTests {
    @Test("tokens add --expires-in out of range is a usage error naming the flag")
    func tokenLifetime() async throws {
        let database = try TestServer.temporaryDatabasePath()
        let added = try await Command.run(["users", "add", "bot", "--bot", "--database", database])
        #expect(added.status == 0, "\(added.errors)")
        for value in ["10000000000000000", "9223372036854775807", "0", "-1"] {
            let result = try await Command.run(["tokens", "add", "bot", "--expires-in=\(value)", "--database", database])
            #expect(result.status == 64, "--expires-in \(value): status \(result.status), \(result.errors)")
            #expect(result.errors.contains("--expires-in must be 1 to"), "\(result.errors)")
        }
        let fine = try await Command.run(["tokens", "add", "bot", "--expires-in", "3600", "--database", database])
        #expect(fine.status == 0, "\(fine.errors)")
    }

    @Test("serve refuses durations, sizes and rates out of range before starting")
    func serveFlags() async throws {
        let database = try TestServer.temporaryDatabasePath()
        for (flag, value) in [
            ("--typing-expiry-ms", "9223372036854775807"), ("--ping-interval-ms", "9223372036854775807"), ("--ping-timeout-ms", "0"),
            ("--idle-timeout-ms", "-5"), ("--shutdown-timeout-ms", "9223372036854775807"), ("--max-frame-bytes", "99999999999"),
            ("--messages-per-second", "1e-300"), ("--messages-per-second", "inf"), ("--typing-per-second", "nan"),
            ("--session-days", "9223372036854775807"), ("--max-connections-per-address", "0"),
        ] {
            let result = try await Command.run(["serve", "--port", "0", "--database", database, "\(flag)=\(value)"])
            #expect(result.status == 64, "\(flag) \(value): status \(result.status), \(result.errors)")
            #expect(result.errors.contains(flag) || result.errors.contains("must be positive"), "\(flag) \(value): \(result.errors)")
        }
    }
}

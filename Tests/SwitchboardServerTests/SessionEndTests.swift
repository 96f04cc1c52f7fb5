import SwitchboardProtocol
import Testing

@testable import SwitchboardServer

@Suite("How a session ends, whatever carries it", .timeLimit(.minutes(1)))
struct SessionEndTests {
    @Test("each reason has the protocol's close code")
    func closeCodes() {
        #expect(SessionEnd.tokenRevoked.closeCode == .unauthorized)
        #expect(SessionEnd.tokenExpired.closeCode == .unauthorized)
        #expect(CloseCode.unauthorized.rawValue == 4001)
        #expect(SessionEnd.shuttingDown.closeCode.rawValue == 1001)
        #expect(SessionEnd.tooManyConnections(limit: 3).closeCode == .policyViolation)
        #expect(SessionEnd.tooManyConnections(limit: 3).reason.contains("3"))
        #expect(SessionEnd.replacedByNewerSession.closeCode.rawValue == 1008)
    }

    @Test("a long-polling session that is ended answers its waiting poll and the next one with the reason")
    func pollAnswer() async throws {
        let session = PollSession(id: "s1", userId: "u1", maxBacklog: 10)
        let waiting = Task { try await session.poll(from: 0, timeout: .seconds(30)) }
        // The poll may not be waiting yet; ending the session answers it either way.
        session.close(.tokenRevoked)
        do {
            _ = try await waiting.value
            Issue.record("the waiting poll did not fail")
        } catch let error as ProtocolError {
            #expect(error.code == .invalid)
            #expect(error.message.contains("token revoked"))
        }
        await #expect(throws: ProtocolError.self) { try await session.poll(from: 0, timeout: .zero) }
        #expect(session.isExpired(now: .now, expiry: .seconds(60)))
    }
}

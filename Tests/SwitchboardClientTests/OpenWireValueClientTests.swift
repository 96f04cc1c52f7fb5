import NIOHTTP1
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import SwitchboardClient

/// A newer server's values (an error code, a presence status) reach the client as themselves; the
/// WebSocket error with an unknown code is `BoundsTests.unknownErrorCode`.
@Suite("The client and values a newer server added", .timeLimit(.minutes(1)))
struct OpenWireValueClientTests {
    @Test("an HTTP error body with an unknown code is a refusal that keeps the server's code")
    func unknownHTTPErrorCode() {
        let body = #"{"error":{"code":"brand_new","message":"a newer server says no"}}"#
        let error = HTTPAPI.error(status: .unprocessableEntity, headers: [:], body: Array(body.utf8))
        #expect(error.code == .refused)
        #expect(error.protocolError?.code == ErrorCode(rawValue: "brand_new"))
    }

    @Test("a presence status the client does not know leaves the user's online state as it was")
    func unknownPresenceStatus() throws {
        let client = try ChatClient(configuration: testConfiguration("http://127.0.0.1:9", token: "sb_x"), logger: testLogger("presence"))
        client.handleFrame(Array(#"{"type":"presence","userId":"u1","data":{"status":"online"},"timestamp":1}"#.utf8), link: 1)
        client.handleFrame(Array(#"{"type":"presence","userId":"u1","data":{"status":"away"},"timestamp":2}"#.utf8), link: 1)
        #expect(client.state.withLock { $0.directory.online.contains("u1") })
        client.handleFrame(Array(#"{"type":"presence","userId":"u1","data":{"status":"offline"},"timestamp":3}"#.utf8), link: 1)
        #expect(!client.state.withLock { $0.directory.online.contains("u1") })
    }
}

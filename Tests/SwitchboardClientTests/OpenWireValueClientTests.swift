import NIOHTTP1
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import SwitchboardClient

/// A newer server's values (an error code, a presence status) reach the client as themselves.
@Suite("The client and values a newer server added", .timeLimit(.minutes(1)))
struct OpenWireValueClientTests {
    @Test("a WebSocket error with an unknown code settles its request as a final, non-transient refusal naming the code")
    func unknownErrorCodeSettles() throws {
        let client = try ChatClient(configuration: testConfiguration("http://127.0.0.1:9", token: "sb_x"), logger: testLogger("codes"))
        client.withState { $0.requests.pending["c1"] = ChatClient.PendingRequest(link: 1, kind: .awaiting) }
        let frame = #"{"type":"error","ref":"c1","roomId":"r1","data":{"code":"brand_new","message":"a newer server says no"},"timestamp":1}"#
        client.handleFrame(Array(frame.utf8), link: 1)
        let answer = client.state.withLock { state -> ClientError? in
            guard case .answered(.failure(let error))? = state.requests.pending["c1"]?.kind else { return nil }
            return error
        }
        #expect(answer?.code == .refused)
        #expect(answer?.isTransient == false)
        #expect(answer?.protocolError?.code.rawValue == "brand_new")
        #expect(answer?.message.contains("brand_new") == true)
    }

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

import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

// Helpers shared by the end-to-end tests of this folder. Every test runs its own server.

/// Runs `body` against a new server whose test configuration is adjusted by `adjust`.
func withServer<Result: Sendable>(
    _ adjust: (inout ServerConfiguration) -> Void = { _ in },
    databasePath: String? = nil,
    _ body: (TestServer) async throws -> Result
) async throws -> Result {
    try await TestServer.withServer(configuration: TestServer.testConfiguration(adjust), databasePath: databasePath, body)
}

/// A configuration change that lifts the message rate limit, for tests that send a lot.
func unlimitedRate(_ configuration: inout ServerConfiguration) {
    configuration.messagesPerSecond = 100_000
    configuration.messageBurst = 100_000
}

/// Room for a backlog of messages of `contentLength` bytes queued to a client that stops reading:
/// no rate limit, messages that large, and a send cap far above what such tests queue.
func largeBacklog(_ configuration: inout ServerConfiguration, contentLength: Int) {
    unlimitedRate(&configuration)
    configuration.maxOutboundBytes = 256 << 20
    configuration.limits.maxContentLength = contentLength + 100
    configuration.limits.maxFrameBytes = contentLength + 64 * 1024
}

// MARK: Expectations

/// Expects an HTTP error answer with the contract's status and body for `code`.
func expectHTTPError(
    _ answer: HTTPAnswer, _ status: Int, _ code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(answer.status == status, "expected HTTP \(status) \(code.rawValue), got \(answer.status): \(answer.text)", sourceLocation: sourceLocation)
    #expect(answer.error?.code == code, "expected error body with code \(code.rawValue), got: \(answer.text)", sourceLocation: sourceLocation)
    #expect(!(answer.error?.message.isEmpty ?? true), "error body without a message: \(answer.text)", sourceLocation: sourceLocation)
}

/// Expects an `error` frame with `code`, echoing `ref` and `roomId` when given.
func expectErrorFrame(
    _ frame: TestFrame, _ code: String, ref: String? = nil, roomId: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(frame.type == "error", "expected an error \(code), got \(frame.raw)", sourceLocation: sourceLocation)
    #expect(frame.errorCode == code, "expected error code \(code), got \(frame.raw)", sourceLocation: sourceLocation)
    #expect(frame.data?["message"]?.stringValue != nil, "error without a message: \(frame.raw)", sourceLocation: sourceLocation)
    if let ref { #expect(frame.ref == ref, "error does not echo ref \(ref): \(frame.raw)", sourceLocation: sourceLocation) }
    if let roomId { #expect(frame.roomId == roomId, "error does not echo roomId \(roomId): \(frame.raw)", sourceLocation: sourceLocation) }
}

/// Expects an `ack` frame, echoing `roomId` when given.
func expectAck(_ frame: TestFrame, roomId: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(frame.type == "ack", "expected an ack, got \(frame.raw)", sourceLocation: sourceLocation)
    if let roomId { #expect(frame.roomId == roomId, "ack does not echo roomId \(roomId): \(frame.raw)", sourceLocation: sourceLocation) }
}

/// The seqs of messages, in the order given.
func seqs(_ messages: [Message]) -> [Int] { messages.map(\.seq) }

// MARK: HTTP shortcuts

extension TestServer {
    /// A page of history; `query` is the query string without `?`.
    func history(_ roomId: String, token: String, query: String = "") async throws -> MessagesResponse {
        let path = "/api/rooms/\(roomId)/messages" + (query.isEmpty ? "" : "?\(query)")
        return try await request(.GET, path, token: token).decode(MessagesResponse.self)
    }

    /// Every message of a room, read with `after` pages from the start.
    func allMessages(_ roomId: String, token: String) async throws -> [Message] {
        var messages: [Message] = []
        var after = 0
        while true {
            let page = try await history(roomId, token: token, query: "after=\(after)&limit=200")
            messages += page.messages
            guard page.hasMore, let last = page.messages.last else { return messages }
            after = last.seq
        }
    }

    /// `POST /api/rooms/{id}/messages` with a JSON body.
    func postMessage(_ roomId: String, token: String, _ body: JSONValue) async throws -> HTTPAnswer {
        try await request(.POST, "/api/rooms/\(roomId)/messages", token: token, json: body)
    }

    /// Posts a message and returns it, expecting 201.
    @discardableResult
    func post(_ content: String, roomId: String, token: String, clientId: String? = nil) async throws -> Message {
        var body: [String: JSONValue] = ["content": .string(content)]
        if let clientId { body["clientId"] = .string(clientId) }
        return try await postMessage(roomId, token: token, .object(body)).decode(MessageAck.self, expecting: 201).message
    }

    /// The caller's rooms from `GET /api/rooms`.
    func rooms(token: String) async throws -> [RoomSummary] {
        try await request(.GET, "/api/rooms", token: token).decode(RoomsResponse.self).rooms
    }

    /// One room's summary from `GET /api/rooms`.
    func summary(_ roomId: String, token: String) async throws -> RoomSummary? {
        try await rooms(token: token).first { $0.room.id == roomId }
    }

    /// `GET /api/rooms/{id}`.
    func room(_ roomId: String, token: String) async throws -> HTTPAnswer {
        try await request(.GET, "/api/rooms/\(roomId)", token: token)
    }

    /// `POST /api/rooms/{id}/members`.
    func addMember(_ userId: String, to roomId: String, token: String) async throws -> HTTPAnswer {
        try await request(.POST, "/api/rooms/\(roomId)/members", token: token, json: UserIdRequest(userId: userId))
    }

    /// `DELETE /api/rooms/{id}/members/{userId}`.
    func removeMember(_ userId: String, from roomId: String, token: String) async throws -> HTTPAnswer {
        try await request(.DELETE, "/api/rooms/\(roomId)/members/\(userId)", token: token)
    }

    /// `POST /api/dms`.
    func directRoom(with userId: String, token: String) async throws -> HTTPAnswer {
        try await request(.POST, "/api/dms", token: token, json: UserIdRequest(userId: userId))
    }

    /// `POST /api/tokens`, expecting 201.
    func createToken(token: String, name: String = "script", expiresInSeconds: Int? = nil) async throws -> CreateTokenResponse {
        try await request(.POST, "/api/tokens", token: token, json: CreateTokenRequest(name: name, expiresInSeconds: expiresInSeconds))
            .decode(CreateTokenResponse.self, expecting: 201)
    }

    /// `GET /api/me`.
    func me(token: String) async throws -> HTTPAnswer {
        try await request(.GET, "/api/me", token: token)
    }

    /// `GET /api/events`; `query` is the query string without `?`.
    func poll(token: String, query: String = "") async throws -> HTTPAnswer {
        try await request(.GET, "/api/events" + (query.isEmpty ? "" : "?\(query)"), token: token)
    }
}

// MARK: WebSocket shortcuts

extension TestSocket {
    /// Sends every request at once, then waits for the answer to each; answers are in request order.
    func pipeline(_ requests: [(type: String, roomId: String?, data: JSONValue?)], timeout: Duration = .seconds(20)) async throws -> [TestFrame] {
        var refs: [String] = []
        for request in requests {
            let ref = makeRef()
            refs.append(ref)
            try await send(request.type, roomId: request.roomId, data: request.data, ref: ref)
        }
        var answers: [TestFrame] = []
        for ref in refs {
            answers.append(try await next(timeout: timeout) { $0.ref == ref && ($0.type == "ack" || $0.type == "error") })
        }
        return answers
    }

    /// Sends `count` messages at once ("prefix 1", "prefix 2", …) and returns the stored messages.
    @discardableResult
    func fill(_ roomId: String, count: Int, prefix: String = "m") async throws -> [Message] {
        let requests = (1...count).map { index -> (type: String, roomId: String?, data: JSONValue?) in
            ("message", roomId, ["content": .string("\(prefix) \(index)")])
        }
        return try await pipeline(requests).map { answer in
            guard answer.type == "ack" else { throw TestFailure("message refused: \(answer.raw)") }
            return try answer.decode(MessageAck.self).message
        }
    }

    /// The next `count` `message` frames of a room, decoded.
    func messages(_ count: Int, in roomId: String, timeout: Duration = .seconds(10)) async throws -> [Message] {
        var messages: [Message] = []
        for _ in 0..<count {
            let frame = try await next(timeout: timeout) { $0.type == "message" && $0.roomId == roomId }
            messages.append(try frame.decode(Message.self))
        }
        return messages
    }

    /// Sends one raw frame with a `ref` and returns the answer carrying it.
    func answer(toRaw text: String, ref: String, timeout: Duration = .seconds(10)) async throws -> TestFrame {
        try await send(raw: text)
        return try await next(timeout: timeout) { $0.ref == ref }
    }

    /// A ping round trip: proves the connection is open and every earlier frame was handled.
    func roundTrip(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let ref = makeRef()
        try await send("ping", data: ["probe": .string(ref)], ref: ref)
        let pong = try await next { $0.ref == ref }
        #expect(pong.type == "pong", "no pong: \(pong.raw)", sourceLocation: sourceLocation)
    }
}

/// A JSON text with `roomId` put in place of the `ROOM` placeholder.
func json(_ template: String, roomId: String) -> String {
    template.replacingOccurrences(of: "ROOM", with: roomId)
}

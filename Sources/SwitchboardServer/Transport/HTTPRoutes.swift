import Hummingbird
import HummingbirdCore
import Foundation
import NIOCore
import SwitchboardProtocol

/// The HTTP API of the contract, route by route.
struct HTTPRoutes {
    let service: ChatService
    let accounts: Accounts
    let polls: PollSessions

    func add(to router: Router<ChatRequestContext>) {
        router.get("healthz") { _, _ in try json(HealthResponse(status: "ok")) }
        router.get("metrics") { request, _ in
            try checkMetricsToken(request)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: service.metrics.render()))
            )
        }
        router.post("api/register") { request, context in
            let body = try await body(RegisterRequest.self, request, context)
            return try json(try await accounts.register(body, from: ConnectionRegistry.address(of: context.channel)), status: .created)
        }
        router.post("api/login") { request, context in
            let body = try await body(LoginRequest.self, request, context)
            return try json(try await accounts.login(body, from: ConnectionRegistry.address(of: context.channel)))
        }

        let api = router.group("api").add(middleware: AuthMiddleware(accounts: accounts, allowsQueryToken: false))
        api.get("me") { _, context in try json(UserResponse(user: try context.requireIdentity().user)) }
        api.post("tokens") { request, context in
            let identity = try context.requireIdentity()
            return try json(try await accounts.createToken(identity, try await body(CreateTokenRequest.self, request, context)), status: .created)
        }
        api.get("tokens") { _, context in
            try json(try await accounts.tokens(try context.requireIdentity()))
        }
        api.delete("tokens/:id") { _, context in
            try await accounts.revokeToken(try context.requireIdentity(), id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        api.post("logout") { _, context in
            let identity = try context.requireIdentity()
            try await accounts.revokeToken(identity, id: identity.tokenId)
            return Response(status: .noContent)
        }
        api.get("users") { request, _ in
            try json(UsersResponse(users: try await service.searchUsers(try Query(request.uri).get("query") ?? "")))
        }
        api.get("users/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let user = try await service.storeCall({ try await service.store.user(id: id) }) else {
                throw ProtocolError(.notFound, "no user \(id)")
            }
            return try json(UserResponse(user: user))
        }
        api.get("rooms") { _, context in
            try json(RoomsResponse(rooms: try await service.rooms(try context.requireIdentity())))
        }
        api.get("rooms/public") { request, _ in
            let query = try Query(request.uri)
            let limit = try query.limit()
            let rooms = try await service.storeCall { try await service.store.publicRooms(query: query.get("query") ?? "", limit: limit) }
            return try json(PublicRoomsResponse(rooms: rooms))
        }
        api.post("rooms") { request, context in
            let room = try await service.createRoom(try context.requireIdentity(), try await body(CreateRoomRequest.self, request, context))
            return try json(RoomResponse(room: room), status: .created)
        }
        api.get("rooms/:id") { _, context in
            let room = try await service.readableRoom(try context.requireIdentity(), try context.parameters.require("id"))
            return try json(RoomResponse(room: room.room))
        }
        api.post("rooms/:id/members") { request, context in
            let userId = try await body(UserIdRequest.self, request, context).userId
            let room = try await service.addMember(try context.requireIdentity(), roomId: try context.parameters.require("id"), userId: userId)
            return try json(RoomResponse(room: room))
        }
        api.delete("rooms/:id/members/:userId") { _, context in
            let room = try await service.removeMember(
                try context.requireIdentity(), roomId: try context.parameters.require("id"), userId: try context.parameters.require("userId")
            )
            return try json(RoomResponse(room: room))
        }
        api.post("dms") { request, context in
            let userId = try await body(UserIdRequest.self, request, context).userId
            return try json(RoomResponse(room: try await service.directRoom(try context.requireIdentity(), with: userId)))
        }
        api.get("rooms/:id/messages") { request, context in
            let query = try Query(request.uri)
            let page = try await service.history(
                try context.requireIdentity(), roomId: try context.parameters.require("id"),
                after: try query.integer("after"), before: try query.integer("before"), limit: try query.limit()
            )
            return try json(page)
        }
        api.post("rooms/:id/messages") { request, context in
            let receivedAt = ContinuousClock.now
            let raw = try await body(JSONValue.self, request, context)
            let data = try SendMessageData(checking: raw, limits: service.configuration.limits)
            let ack = try await service.sendMessage(try context.requireIdentity(), roomId: try context.parameters.require("id"), data, receivedAt: receivedAt)
            return try json(ack, status: ack.duplicate ? .ok : .created)
        }
        api.get("events") { request, context in
            try json(try await poll(try context.requireIdentity(), query: try Query(request.uri)))
        }
        // Hardening: WebSocket (1.1): who is online and typing in a room, members only.
        api.get("rooms/:id/presence") { _, context in
            try json(try await service.presence(try context.requireIdentity(), roomId: try context.parameters.require("id")))
        }
    }

    /// `/metrics` needs the configured bearer token, and is not served without one.
    private func checkMetricsToken(_ request: Request) throws {
        guard let expected = service.configuration.metricsToken, !expected.isEmpty else {
            throw ProtocolError(.notFound, "metrics are not served: start the server with --metrics-token to enable GET /metrics")
        }
        let header = request.headers[.authorization] ?? ""
        let parts = header.split(separator: " ", maxSplits: 1)
        // Compared by hash, so that the time taken does not tell how much of it matched.
        guard parts.count == 2, parts[0].lowercased() == "bearer",
            Credentials.hash(token: String(parts[1]).trimmingSpaces()) == Credentials.hash(token: expected)
        else {
            throw ProtocolError(.unauthorized, "GET /metrics needs 'Authorization: Bearer <the server's --metrics-token>'")
        }
    }

    /// One long poll: a new session without a cursor, else the events after the cursor.
    private func poll(_ identity: Identity, query: Query) async throws -> EventsResponse {
        let configuration = service.configuration
        let requested = try query.integer("timeoutMs").map { Duration.milliseconds(max(0, $0)) } ?? configuration.defaultPollTimeout
        let timeout = min(requested, configuration.maxPollTimeout)
        guard let cursor = query.get("cursor") else {
            let session = PollSession(id: PollSessions.newID(), userId: identity.user.id, maxBacklog: configuration.maxPollBacklog)
            session.hubConnection = try await service.openSession(identity, sink: session, followsAllRooms: true)
            for ended in polls.add(session) {
                ended.close(.replacedByNewerSession)
                service.closeSession(ended.hubConnection)
            }
            return EventsResponse(events: [], cursor: "\(session.id).0")
        }
        let (session, position) = try polls.find(cursor: cursor, userId: identity.user.id)
        let (frames, next) = try await session.poll(from: position, timeout: timeout)
        let events = try frames.map { try Wire.decode(Envelope<JSONValue>.self, from: $0.readableBytesView) }
        return EventsResponse(events: events, cursor: "\(session.id).\(next)")
    }
}

/// A query string as browsers send it: `+` is a space, then percent-decoding; the first of
/// repeated names counts.
struct Query {
    private var values: [String: String] = [:]

    init(_ uri: URI) throws(ProtocolError) {
        guard let raw = uri.query else { return }
        for pair in raw.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try Self.decode(parts[0])
            if values[name] == nil { values[name] = try parts.count > 1 ? Self.decode(parts[1]) : "" }
        }
    }

    func get(_ name: String) -> String? { values[name] }

    /// An integer parameter, `invalid` when present but not a number that fits.
    func integer(_ name: String) throws(ProtocolError) -> Int? {
        guard let raw = values[name] else { return nil }
        guard let value = Int(raw) else { throw ProtocolError(.invalid, "\(name) must be an integer (at most \(Int.max))") }
        return value
    }

    /// `limit`: 50 when absent, at most 200, `invalid` under 1.
    func limit() throws(ProtocolError) -> Int {
        let limit = try integer("limit") ?? 50
        guard limit >= 1 else { throw ProtocolError(.invalid, "limit must be at least 1") }
        return min(limit, 200)
    }

    private static func decode(_ text: Substring) throws(ProtocolError) -> String {
        guard let decoded = text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
            throw ProtocolError(.invalid, "the query string has a bad percent-encoding: \(text)")
        }
        return decoded
    }
}

/// A JSON answer.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(
        status: status,
        headers: [.contentType: "application/json; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try Wire.encode(value)))
    )
}

/// The request's JSON body, or `invalid` naming what is wrong with it.
func body<Value: Decodable>(_ type: Value.Type, _ request: Request, _ context: ChatRequestContext) async throws -> Value {
    let buffer = try await request.body.collect(upTo: context.maxUploadSize)
    do {
        return try Wire.decode(type, from: buffer.readableBytesView)
    } catch let error as DecodingError {
        throw ProtocolError(.invalid, describe(error))
    } catch {
        throw ProtocolError(.invalid, "the body is not valid JSON")
    }
}

private func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context, _ last: CodingKey? = nil) -> String {
        (["body"] + (context.codingPath + (last.map { [$0] } ?? [])).map(\.stringValue)).joined(separator: ".")
    }
    switch error {
    case .keyNotFound(let key, let context): return "\(path(context, key)) is required"
    case .typeMismatch(let type, let context): return "\(path(context)) must be \(type == String.self ? "a string" : "of type \(type)")"
    case .valueNotFound(_, let context): return "\(path(context)) must not be null"
    case .dataCorrupted(let context):
        return context.codingPath.isEmpty ? "the body is not valid JSON" : "\(path(context)) is not valid"
    @unknown default: return "the body is not valid"
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardProtocol

/// The server's HTTP API, route by route, with the contract's errors turned into ``ClientError``s.
///
/// A value type holding only the base URL and a timeout: the token is passed to every call, since
/// it may change (a password login at start).
struct HTTPAPI: Sendable {
    let base: String
    let timeout: Duration
    let client: HTTPClient

    init(base: String, timeout: Duration, client: HTTPClient = .shared) {
        self.base = base
        self.timeout = timeout
        self.client = client
    }

    // MARK: Accounts

    func login(username: String, password: String) async throws(ClientError) -> AuthResponse {
        try await call(.POST, "/api/login", body: LoginRequest(username: username, password: password), as: AuthResponse.self)
    }

    func register(_ request: RegisterRequest) async throws(ClientError) -> AuthResponse {
        try await call(.POST, "/api/register", body: request, as: AuthResponse.self)
    }

    func me(token: String) async throws(ClientError) -> User {
        try await call(.GET, "/api/me", token: token, as: UserResponse.self).user
    }

    func createToken(_ request: CreateTokenRequest, token: String) async throws(ClientError) -> CreateTokenResponse {
        try await call(.POST, "/api/tokens", token: token, body: request, as: CreateTokenResponse.self)
    }

    func revokeToken(id: String, token: String) async throws(ClientError) {
        _ = try await send(.DELETE, "/api/tokens/\(escape(id))", token: token, body: Optional<EmptyData>.none)
    }

    func user(id: String, token: String) async throws(ClientError) -> User {
        try await call(.GET, "/api/users/\(escape(id))", token: token, as: UserResponse.self).user
    }

    func tokens(token: String) async throws(ClientError) -> [TokenInfo] {
        try await call(.GET, "/api/tokens", token: token, as: TokensResponse.self).tokens
    }

    func logout(token: String) async throws(ClientError) {
        _ = try await send(.POST, "/api/logout", token: token, body: Optional<EmptyData>.none)
    }

    func users(query: String, token: String) async throws(ClientError) -> [User] {
        try await call(.GET, "/api/users?query=\(escape(query))", token: token, as: UsersResponse.self).users
    }

    // MARK: Rooms

    func rooms(token: String) async throws(ClientError) -> [RoomSummary] {
        try await call(.GET, "/api/rooms", token: token, as: RoomsResponse.self).rooms
    }

    func publicRooms(query: String, limit: Int, token: String) async throws(ClientError) -> [Room] {
        try await call(.GET, "/api/rooms/public?query=\(escape(query))&limit=\(limit)", token: token, as: PublicRoomsAnswer.self).rooms
    }

    func presence(roomId: String, token: String) async throws(ClientError) -> RoomPresence {
        try await call(.GET, "/api/rooms/\(escape(roomId))/presence", token: token, as: RoomPresence.self)
    }

    func room(_ id: String, token: String) async throws(ClientError) -> Room {
        try await call(.GET, "/api/rooms/\(escape(id))", token: token, as: RoomResponse.self).room
    }

    func createRoom(_ request: CreateRoomRequest, token: String) async throws(ClientError) -> Room {
        try await call(.POST, "/api/rooms", token: token, body: request, as: RoomResponse.self).room
    }

    func addMember(roomId: String, userId: String, token: String) async throws(ClientError) -> Room {
        try await call(.POST, "/api/rooms/\(escape(roomId))/members", token: token, body: UserIdRequest(userId: userId), as: RoomResponse.self).room
    }

    func removeMember(roomId: String, userId: String, token: String) async throws(ClientError) -> Room {
        try await call(.DELETE, "/api/rooms/\(escape(roomId))/members/\(escape(userId))", token: token, as: RoomResponse.self).room
    }

    func directRoom(with userId: String, token: String) async throws(ClientError) -> Room {
        try await call(.POST, "/api/dms", token: token, body: UserIdRequest(userId: userId), as: RoomResponse.self).room
    }

    // MARK: Messages

    func history(roomId: String, after: Int?, before: Int?, limit: Int, token: String) async throws(ClientError) -> MessagesResponse {
        var query = ["limit=\(limit)"]
        if let after { query.append("after=\(after)") }
        if let before { query.append("before=\(before)") }
        return try await call(.GET, "/api/rooms/\(escape(roomId))/messages?" + query.joined(separator: "&"), token: token, as: MessagesResponse.self)
    }

    func sendMessage(roomId: String, _ data: SendMessageData, token: String) async throws(ClientError) -> MessageAck {
        try await call(.POST, "/api/rooms/\(escape(roomId))/messages", token: token, body: data, as: MessageAck.self)
    }

    func events(cursor: String?, wait: Duration, token: String) async throws(ClientError) -> EventsResponse {
        var path = "/api/events?timeoutMs=\(wait.milliseconds)"
        if let cursor { path += "&cursor=\(escape(cursor))" }
        // The request may legitimately take the whole poll; give it that plus the usual timeout.
        return try await call(.GET, path, token: token, timeout: wait + timeout, as: EventsResponse.self)
    }

    // MARK: Plumbing

    private func call<Answer: Decodable>(
        _ method: HTTPMethod, _ path: String, token: String? = nil, timeout: Duration? = nil, as type: Answer.Type
    ) async throws(ClientError) -> Answer {
        try await call(method, path, token: token, body: Optional<EmptyData>.none, timeout: timeout, as: type)
    }

    private func call<Body: Encodable, Answer: Decodable>(
        _ method: HTTPMethod, _ path: String, token: String? = nil, body: Body?, timeout: Duration? = nil, as type: Answer.Type
    ) async throws(ClientError) -> Answer {
        let bytes = try await send(method, path, token: token, body: body, timeout: timeout)
        do {
            return try Wire.decode(type, from: bytes)
        } catch {
            throw ClientError(.badResponse, "\(method) \(path.prefix { $0 != "?" }): the answer is not what the protocol says", cause: error)
        }
    }

    /// Sends a request; returns the body of a 2xx answer, throws the contract's error otherwise.
    private func send<Body: Encodable>(
        _ method: HTTPMethod, _ path: String, token: String?, body: Body?, timeout: Duration? = nil
    ) async throws(ClientError) -> [UInt8] {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            do {
                request.body = .bytes(ByteBuffer(bytes: try Wire.encode(body)))
            } catch {
                throw ClientError(.invalid, "cannot encode the request body", cause: error)
            }
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        let status: HTTPResponseStatus
        let headers: HTTPHeaders
        let bytes: [UInt8]
        do {
            let response = try await client.execute(request, timeout: .nanoseconds((timeout ?? self.timeout).nanoseconds))
            status = response.status
            headers = response.headers
            bytes = Array(buffer: try await response.body.collect(upTo: 64 << 20))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw ClientError(.timeout, "\(method) \(path.prefix { $0 != "?" }) got no answer in time", cause: error)
        } catch is CancellationError {
            throw ClientError(.shutdown, "the request was cancelled", cause: CancellationError())
        } catch {
            throw ClientError(.unreachable, "cannot reach \(base)", cause: error)
        }
        guard (200..<300).contains(status.code) else {
            throw Self.error(status: status, headers: headers, body: bytes)
        }
        return bytes
    }

    /// The error of a non-2xx answer: the contract's error body when there is one, else one made from the status.
    static func error(status: HTTPResponseStatus, headers: HTTPHeaders, body: [UInt8]) -> ClientError {
        if var error = try? Wire.decode(ErrorResponse.self, from: body).error {
            if error.code == .rateLimited, error.retryAfterMs == nil, let seconds = headers.first(name: "Retry-After").flatMap(Int.init) {
                error.retryAfterMs = seconds * 1000
            }
            return ClientError(error)
        }
        let code: ErrorCode? =
            switch status.code {
            case 400: .invalid
            case 401: .unauthorized
            case 403: .forbidden
            case 404: .notFound
            case 409: .conflict
            case 413: .tooLarge
            case 429: .rateLimited
            default: nil
            }
        guard let code else { return ClientError(.server, "the server answered HTTP \(status.code)") }
        var error = ProtocolError(code, "the server answered HTTP \(status.code)")
        if code == .rateLimited { error.retryAfterMs = headers.first(name: "Retry-After").flatMap(Int.init).map { $0 * 1000 } }
        return ClientError(error)
    }

    private func escape(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+/?#"))) ?? component
    }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    var nanoseconds: Int64 {
        let (seconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        return seconds + components.attoseconds / 1_000_000_000
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardProtocol

/// A user the generator acts as.
struct Account: Sendable, Hashable {
    var userId: String
    var token: String
}

/// The HTTP half of the protocol, as far as setting up a run needs it.
struct ServerAPI: Sendable {
    let baseURL: String
    let client: HTTPClient

    init(baseURL: String, client: HTTPClient = .shared) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.client = client
    }

    struct Answer: Sendable {
        var status: Int
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func request(_ method: HTTPMethod, _ path: String, token: String? = nil, body: [UInt8]? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await client.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Answer(status: Int(response.status.code), body: Array(buffer: bytes))
    }

    func request<Body: Encodable>(_ method: HTTPMethod, _ path: String, token: String? = nil, json: Body) async throws -> Answer {
        try await request(method, path, token: token, body: try Wire.encode(json))
    }

    private func expect<Value: Decodable>(_ answer: Answer, _ status: Int, _ type: Value.Type, _ what: String) throws -> Value {
        guard answer.status == status else {
            throw BenchError("\(what): HTTP \(answer.status): \(answer.text.prefix(300))")
        }
        return try Wire.decode(type, from: answer.body)
    }

    /// Registers a user; when the name is taken, logs in with the same password.
    func register(username: String, password: String) async throws -> Account {
        let answer = try await request(.POST, "/api/register", json: RegisterRequest(username: username, password: password))
        if answer.status == 409 {
            let login = try await request(.POST, "/api/login", json: LoginRequest(username: username, password: password))
            let auth = try expect(login, 200, AuthResponse.self, "login \(username)")
            return Account(userId: auth.user.id, token: auth.token)
        }
        let auth = try expect(answer, 201, AuthResponse.self, "register \(username)")
        return Account(userId: auth.user.id, token: auth.token)
    }

    /// The user id behind a token.
    func userId(token: String) async throws -> String {
        try expect(try await request(.GET, "/api/me", token: token), 200, UserResponse.self, "GET /api/me").user.id
    }

    /// Creates a private group room as `creator`, with `members`; returns its id.
    func createRoom(name: String, creator: Account, members: [String]) async throws -> String {
        let answer = try await request(.POST, "/api/rooms", token: creator.token, json: CreateRoomRequest(name: name, isPublic: false, members: members))
        return try expect(answer, 201, RoomResponse.self, "create room").room.id
    }

    /// Sends a message over HTTP; retries when rate limited. Returns its `seq`.
    func postMessage(roomId: String, content: String, clientId: String?, as account: Account) async throws -> Int {
        while true {
            let answer = try await request(.POST, "/api/rooms/\(roomId)/messages", token: account.token, json: SendMessageData(content: content, clientId: clientId))
            if answer.status == 429 {
                let wait = (try? Wire.decode(ErrorResponse.self, from: answer.body).error.retryAfterMs) ?? 100
                try await Task.sleep(for: .milliseconds(max(wait, 1)))
                continue
            }
            guard answer.status == 201 || answer.status == 200 else {
                throw BenchError("POST message: HTTP \(answer.status): \(answer.text.prefix(300))")
            }
            return try Wire.decode(MessageAck.self, from: answer.body).message.seq
        }
    }

    /// The room's newest `seq`.
    func lastSeq(roomId: String, as account: Account) async throws -> Int {
        try expect(try await request(.GET, "/api/rooms/\(roomId)", token: account.token), 200, RoomResponse.self, "GET room").room.lastSeq
    }

    /// Whether `GET /healthz` answers 200 (quickly).
    static func isHealthy(baseURL: String) async -> Bool {
        var request = HTTPClientRequest(url: baseURL + "/healthz")
        request.method = .GET
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) else { return false }
        _ = try? await response.body.collect(upTo: 1 << 16)
        return response.status == .ok
    }
}

/// Users for a run: read from a tokens file, registered through the API, or both.
enum Accounts {
    /// A tokens file holds one user a line: `USER_ID TOKEN`, or a bare `TOKEN` (the id is then
    /// asked with `GET /api/me`). Blank lines and lines starting with `#` are skipped.
    static func read(file path: String, api: ServerAPI) async throws -> [Account] {
        guard let text = ProcFS.read(path) else { throw BenchError("cannot read tokens file \(path)") }
        var accounts: [Account] = []
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if parts.count >= 2 {
                accounts.append(Account(userId: parts[0], token: parts[1]))
            } else {
                accounts.append(Account(userId: try await api.userId(token: parts[0]), token: parts[0]))
            }
        }
        return accounts
    }

    static func write(_ accounts: [Account], to path: String) throws {
        var text = "# switchboard-bench tokens: USER_ID TOKEN\n"
        for account in accounts { text += "\(account.userId) \(account.token)\n" }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// `count` accounts: those of the tokens file first, then new users registered as `PREFIX-N`.
    static func provision(
        count: Int, api: ServerAPI, tokensFile: String?, saveTo: String?, prefix: String, concurrency: Int = 16,
        progress: Progress
    ) async throws -> [Account] {
        var accounts: [Account] = []
        if let tokensFile {
            accounts = Array(try await read(file: tokensFile, api: api).prefix(count))
        }
        let missing = count - accounts.count
        if missing > 0 {
            let started = ContinuousClock.now
            let first = accounts.count
            var registered = [Account?](repeating: nil, count: missing)
            try await withThrowingTaskGroup(of: (Int, Account).self) { group in
                var next = 0
                var done = 0
                func add() {
                    let index = next
                    next += 1
                    group.addTask {
                        (index, try await api.register(username: "\(prefix)-\(first + index)", password: "bench-password"))
                    }
                }
                while next < min(missing, concurrency) { add() }
                while let (index, account) = try await group.next() {
                    registered[index] = account
                    done += 1
                    if done % 100 == 0 || done == missing {
                        progress.update("registering users \(done)/\(missing)")
                    }
                    if next < missing { add() }
                }
            }
            accounts += registered.compactMap { $0 }
            let seconds = (ContinuousClock.now - started).seconds
            progress.note(String(format: "registered %d users in %.1f s", missing, seconds))
        }
        if let saveTo { try write(accounts, to: saveTo) }
        return accounts
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

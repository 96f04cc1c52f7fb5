import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardStore

/// A real Switchboard server on a free loopback port, on a database of its own, for tests.
///
/// The backend is the one `SWITCHBOARD_TEST_DATABASE` names (``TestDatabase``): a SQLite file by
/// default, or a schema of its own in the PostgreSQL database, made for the test and dropped after it.
///
/// ```swift
/// try await TestServer.withServer { server in
///     let alice = try await server.register("alice")
///     let socket = try await server.connect(token: alice.token)
///     ...
/// }
/// ```
public struct TestServer: Sendable {
    /// The port the server listens on.
    public let port: Int
    /// The database behind the server: a SQLite file, or a `postgres://` URL.
    public let databasePath: String
    /// The configuration it runs with.
    public let configuration: ServerConfiguration

    /// A handle on a server started elsewhere (such as the `switchboard` binary run by a test) that
    /// listens on `port` of 127.0.0.1, for the HTTP and WebSocket helpers.
    public init(port: Int, databasePath: String, configuration: ServerConfiguration = testConfiguration()) {
        self.port = port
        self.databasePath = databasePath
        self.configuration = configuration
    }

    /// `http://127.0.0.1:PORT`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    /// `ws://127.0.0.1:PORT/ws`.
    public var webSocketURL: String { "ws://127.0.0.1:\(port)/ws" }

    /// A configuration for tests: port 0, the cheapest bcrypt cost, no limit on logins and
    /// connections per address; every other field as given.
    public static func testConfiguration(_ adjust: (inout ServerConfiguration) -> Void = { _ in }) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.bcryptCost = 4
        // Tests register, log in and connect far faster than people, all from 127.0.0.1.
        configuration.authAttemptsPerMinutePerAddress = 1_000_000
        configuration.authAttemptsPerMinutePerUsername = 1_000_000
        configuration.maxConnectionsPerAddress = 1_000_000
        adjust(&configuration)
        return configuration
    }

    /// Runs a server for the length of `body`, then shuts it down gracefully and closes its store.
    ///
    /// - Parameters:
    ///   - configuration: the server's configuration; its port should be 0.
    ///   - databasePath: a database to reuse (to test a restart), from ``temporaryDatabasePath()``;
    ///     a new one, removed afterwards, when nil.
    public static func withServer<Result: Sendable>(
        configuration: ServerConfiguration = testConfiguration(),
        databasePath: String? = nil,
        logger: Logger = Logger(label: "switchboard.test"),
        _ body: (TestServer) async throws -> Result
    ) async throws -> Result {
        let backend = try TestDatabase.selected
        let path = try databasePath ?? backend.newDatabase()
        let store = try await backend.openStore(path, logger: logger)
        // A database made for this server alone goes with it; one given to reuse stays.
        let removeDatabase: @Sendable () async -> Void = {
            if databasePath == nil { try? await backend.remove(path, logger: logger) }
        }
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = ChatServer(configuration: configuration, store: store, logger: logger) { port in
            portContinuation.yield(port)
            portContinuation.finish()
        }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: server)], gracefulShutdownSignals: [], logger: logger)
        )
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var ports = portStream.makeAsyncIterator()
            guard let port = await ports.next() else {
                try? await tasks.waitForAll()
                try? await Task { try await store.close() }.value
                await removeDatabase()
                throw TestFailure("the server stopped before it listened")
            }
            let testServer = TestServer(port: port, databasePath: path, configuration: configuration)
            var result: Result?
            var failure: (any Error)?
            do { result = try await body(testServer) } catch { failure = error }
            await group.triggerGracefulShutdown()
            do { try await tasks.waitForAll() } catch { failure = failure ?? error }
            // In a task of its own, which a test cancelled by its time limit does not cancel: a
            // store dropped without being closed stops the whole test process (sqlite-nio asserts).
            do { try await Task { try await store.close() }.value } catch { failure = failure ?? error }
            await removeDatabase()
            if let failure { throw failure }
            return result!
        }
    }

    /// A new database for several servers in turn (a restart): a SQLite file in a temporary
    /// folder, or a PostgreSQL URL whose schema the first server creates.
    public static func temporaryDatabasePath() throws -> String {
        try TestDatabase.selected.newDatabase()
    }

    // MARK: HTTP

    /// Sends an HTTP request with a raw body and returns the answer.
    public func request(
        _ method: HTTPMethod, _ path: String, token: String? = nil, body: String? = nil,
        headers: [(String, String)] = []
    ) async throws -> HTTPAnswer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(70))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return HTTPAnswer(status: Int(response.status.code), headers: response.headers, body: Array(buffer: bytes))
    }

    /// Sends an HTTP request with a JSON body.
    public func request(_ method: HTTPMethod, _ path: String, token: String? = nil, json: some Encodable) async throws -> HTTPAnswer {
        try await request(method, path, token: token, body: try Wire.encodeString(json))
    }

    /// Registers a user (password `password123`) and returns the user and a token.
    public func register(_ username: String, displayName: String? = nil) async throws -> AuthResponse {
        let answer = try await request(.POST, "/api/register", json: RegisterRequest(username: username, password: "password123", displayName: displayName))
        return try answer.decode(AuthResponse.self, expecting: 201)
    }

    /// Creates a group room as `token`'s user.
    public func createRoom(_ name: String, token: String, isPublic: Bool = false, members: [String] = []) async throws -> Room {
        let answer = try await request(.POST, "/api/rooms", token: token, json: CreateRoomRequest(name: name, isPublic: isPublic, members: members))
        return try answer.decode(RoomResponse.self, expecting: 201).room
    }

    /// Opens a WebSocket as `token`'s user.
    public func connect(token: String, useQuery: Bool = false) async throws -> TestSocket {
        try await TestSocket.connect(url: webSocketURL, token: token, useQuery: useQuery)
    }
}

/// An HTTP answer: status, headers and body.
public struct HTTPAnswer: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    /// The body as text.
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// Decodes the body after checking the status.
    public func decode<Value: Decodable>(_ type: Value.Type, expecting status: Int = 200) throws -> Value {
        guard self.status == status else {
            throw TestFailure("expected HTTP \(status), got \(self.status): \(text)")
        }
        return try Wire.decode(type, from: body)
    }

    /// The error of an error answer.
    public var error: ProtocolError? {
        try? Wire.decode(ErrorResponse.self, from: body).error
    }
}

/// A test expectation that did not hold.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

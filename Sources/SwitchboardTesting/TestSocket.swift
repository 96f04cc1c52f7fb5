import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardProtocol
import WSClient

/// A frame a test received: its raw text and its JSON.
public struct TestFrame: Sendable, CustomStringConvertible {
    /// The frame as sent by the server.
    public var raw: String
    /// The frame parsed as JSON.
    public var json: JSONValue

    public var type: String? { json["type"]?.stringValue }
    public var ref: String? { json["ref"]?.stringValue }
    public var roomId: String? { json["roomId"]?.stringValue }
    public var userId: String? { json["userId"]?.stringValue }
    public var data: JSONValue? { json["data"] }
    /// `data.code` of an error frame.
    public var errorCode: String? { type == "error" ? data?["code"]?.stringValue : nil }

    /// Decodes `data` as a typed payload.
    public func decode<Payload: Codable & Sendable>(_ type: Payload.Type) throws -> Payload {
        guard let data = try Wire.decode(Envelope<Payload>.self, from: raw).data else {
            throw TestFailure("frame has no data: \(raw)")
        }
        return data
    }

    public var description: String { raw }
}

/// A raw WebSocket connection to a server, with an inbox that tests can wait on.
///
/// Frames are kept in arrival order; `next()` takes the oldest, `next(where:)` the oldest that
/// matches, leaving the others for later.
public final class TestSocket: Sendable {
    private struct State {
        var frames: [TestFrame] = []
        var waiters: [(id: Int, match: @Sendable (TestFrame) -> Bool, continuation: CheckedContinuation<TestFrame?, Never>)] = []
        var closed = false
        var closeCode: Int?
        var closeWaiters: [CheckedContinuation<Int?, Never>] = []
        var outbound: WebSocketOutboundWriter?
        var nextWaiterID = 0
        var nextRef = 0
    }

    private let state = Mutex(State())
    private let task = Mutex<Task<Void, Never>?>(nil)

    private init() {}

    /// Opens a WebSocket with a bearer token (in the header, or as `?token=` with `useQuery`).
    /// Throws when the server refuses the upgrade.
    public static func connect(url: String, token: String?, useQuery: Bool = false, timeout: Duration = .seconds(10)) async throws -> TestSocket {
        let socket = TestSocket()
        var headers = HTTPFields()
        var target = url
        if let token {
            if useQuery {
                target += "?token=\(token)"
            } else {
                headers[.authorization] = "Bearer \(token)"
            }
        }
        let configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 24, additionalHeaders: headers)
        let logger = Logger(label: "switchboard.test.socket")
        let (opened, openedContinuation) = AsyncStream.makeStream(of: Result<Void, any Error>.self)
        let task = Task {
            do {
                let closeFrame = try await WebSocketClient.connect(url: target, configuration: configuration, logger: logger) { inbound, outbound, _ in
                    socket.state.withLock { $0.outbound = outbound }
                    openedContinuation.yield(.success(()))
                    for try await message in inbound.messages(maxSize: 1 << 24) {
                        if case .text(let text) = message { socket.received(text) }
                    }
                }
                openedContinuation.yield(.failure(TestFailure("the connection closed before it opened")))
                socket.didClose(code: closeFrame.map { Int(UInt16(webSocketErrorCode: $0.closeCode)) })
            } catch {
                openedContinuation.yield(.failure(error))
                socket.didClose(code: nil)
            }
        }
        socket.task.withLock { $0 = task }
        guard let result = try await withTimeout(timeout, { await opened.first { _ in true } }) else {
            throw TestFailure("no answer to the WebSocket upgrade")
        }
        try result.get()
        return socket
    }

    private func received(_ text: String) {
        let json = (try? Wire.decode(JSONValue.self, from: text)) ?? .null
        let frame = TestFrame(raw: text, json: json)
        let waiter: CheckedContinuation<TestFrame?, Never>? = state.withLock { state in
            if let index = state.waiters.firstIndex(where: { $0.match(frame) }) {
                return state.waiters.remove(at: index).continuation
            }
            state.frames.append(frame)
            return nil
        }
        waiter?.resume(returning: frame)
    }

    private func didClose(code: Int?) {
        let (waiters, closeWaiters) = state.withLock { state in
            state.closed = true
            state.closeCode = code
            defer {
                state.waiters = []
                state.closeWaiters = []
            }
            return (state.waiters.map(\.continuation), state.closeWaiters)
        }
        waiters.forEach { $0.resume(returning: nil) }
        closeWaiters.forEach { $0.resume(returning: code) }
    }

    // MARK: Sending

    /// Sends one text frame as it is.
    public func send(raw text: String) async throws {
        guard let outbound = state.withLock({ $0.outbound }) else { throw TestFailure("socket not open") }
        try await outbound.write(.text(text))
    }

    /// Sends one binary frame.
    public func send(binary bytes: [UInt8]) async throws {
        guard let outbound = state.withLock({ $0.outbound }) else { throw TestFailure("socket not open") }
        try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
    }

    /// Sends an envelope built from its parts.
    public func send(_ type: String, roomId: String? = nil, data: JSONValue? = nil, ref: String? = nil) async throws {
        var object: [String: JSONValue] = ["type": .string(type)]
        if let roomId { object["roomId"] = .string(roomId) }
        if let data { object["data"] = data }
        if let ref { object["ref"] = .string(ref) }
        try await send(raw: try Wire.encodeString(JSONValue.object(object)))
    }

    /// A new correlation id.
    public func makeRef() -> String {
        state.withLock { state in
            state.nextRef += 1
            return "r\(state.nextRef)"
        }
    }

    /// Sends a request with a new `ref` and waits for its `ack` or `error`, leaving other frames in the inbox.
    @discardableResult
    public func request(_ type: String, roomId: String? = nil, data: JSONValue? = nil, timeout: Duration = .seconds(10)) async throws -> TestFrame {
        let ref = makeRef()
        try await send(type, roomId: roomId, data: data, ref: ref)
        return try await next(timeout: timeout) { $0.ref == ref && ($0.type == "ack" || $0.type == "error") }
    }

    /// Sends a message and returns the stored message from its ack.
    @discardableResult
    public func sendMessage(_ content: String, roomId: String, clientId: String? = nil) async throws -> Message {
        var data: [String: JSONValue] = ["content": .string(content)]
        if let clientId { data["clientId"] = .string(clientId) }
        let answer = try await request("message", roomId: roomId, data: .object(data))
        guard answer.type == "ack" else { throw TestFailure("message refused: \(answer.raw)") }
        return try answer.decode(MessageAck.self).message
    }

    /// Joins a room and returns the ack's data, leaving replayed messages in the inbox.
    @discardableResult
    public func join(_ roomId: String, since: Int? = nil) async throws -> JoinAck {
        let answer = try await request("join", roomId: roomId, data: since.map { ["since": .integer(Int64($0))] })
        guard answer.type == "ack" else { throw TestFailure("join refused: \(answer.raw)") }
        return try answer.decode(JoinAck.self)
    }

    // MARK: Receiving

    /// The oldest frame that matches, waiting for it up to `timeout`.
    public func next(timeout: Duration = .seconds(10), where match: @escaping @Sendable (TestFrame) -> Bool = { _ in true }) async throws -> TestFrame {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let frame = try await withTimeout(timeout, onTimeout: { self.removeWaiter(id) }) {
            await withCheckedContinuation { (continuation: CheckedContinuation<TestFrame?, Never>) in
                let immediate: TestFrame?? = self.state.withLock { state in
                    if let index = state.frames.firstIndex(where: match) {
                        return .some(state.frames.remove(at: index))
                    }
                    if state.closed { return .some(nil) }
                    state.waiters.append((id, match, continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        }
        guard let frame else { throw TestFailure("the socket closed while waiting for a frame") }
        return frame
    }

    /// The oldest frame of a type, waiting for it.
    public func next(_ type: String, timeout: Duration = .seconds(10)) async throws -> TestFrame {
        try await next(timeout: timeout) { $0.type == type }
    }

    /// Frames received and not yet taken.
    public var pending: [TestFrame] { state.withLock { $0.frames } }

    /// Waits for a frame that matches for `duration` and returns it, or nil if none came.
    /// Use only to check that something does NOT arrive, after an event that would have caused it.
    public func nothing(for duration: Duration = .milliseconds(300), where match: @escaping @Sendable (TestFrame) -> Bool = { _ in true }) async -> TestFrame? {
        try? await next(timeout: duration, where: match)
    }

    private func removeWaiter(_ id: Int) {
        let continuation = state.withLock { state -> CheckedContinuation<TestFrame?, Never>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        continuation?.resume(returning: nil)
    }

    /// Waits until the server closes the connection; returns its close code.
    public func closed(timeout: Duration = .seconds(10)) async throws -> Int? {
        try await withTimeout(timeout, onTimeout: { self.abandonCloseWaiters() }) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int?, Never>) in
                let done: Int?? = self.state.withLock { state in
                    if state.closed { return .some(state.closeCode) }
                    state.closeWaiters.append(continuation)
                    return nil
                }
                if let done { continuation.resume(returning: done) }
            }
        }
    }

    private func abandonCloseWaiters() {
        let waiters = state.withLock { state in
            defer { state.closeWaiters = [] }
            return state.closeWaiters
        }
        waiters.forEach { $0.resume(returning: nil) }
    }

    /// Whether the connection has closed.
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Closes the connection from this side and waits for it to end.
    public func close() async {
        let outbound = state.withLock { $0.outbound }
        try? await outbound?.close(.normalClosure, reason: nil)
        _ = try? await closed(timeout: .seconds(5))
        task.withLock { $0 }?.cancel()
    }
}

/// Runs `operation`, failing with `TestFailure` when it takes longer than `timeout`.
public func withTimeout<Value: Sendable>(
    _ timeout: Duration, onTimeout: @escaping @Sendable () -> Void = {}, _ operation: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    try await withThrowingTaskGroup(of: Value?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        while let result = try await group.next() {
            if let value = result {
                group.cancelAll()
                return value
            }
            onTimeout()
            group.cancelAll()
            throw TestFailure("timed out after \(timeout)")
        }
        throw TestFailure("timed out after \(timeout)")
    }
}

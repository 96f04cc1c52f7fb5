import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardProtocol
import SwitchboardStore

/// One WebSocket's requests, answered one at a time in the order they came.
///
/// Every answer goes through the same sink as the hub's events, so that a `join`'s replay,
/// its ack and the live messages after it reach the client in that order.
struct WebSocketSession: Sendable {
    let service: ChatService
    let identity: Identity
    let connection: Int
    let sink: any EventSink
    /// The server's logger, shared: the connection's metadata is added only to what is logged
    /// (a metadata dictionary kept per idle connection costs more than half a kilobyte).
    let serverLogger: Logger
    private var rateLimitedInARow = 0
    /// Messages accepted and not yet answered: a flood close waits for their acks.
    private let unanswered = UnansweredMessages()

    init(service: ChatService, identity: Identity, connection: Int, sink: any EventSink, logger: Logger) {
        self.service = service
        self.identity = identity
        self.connection = connection
        self.sink = sink
        self.serverLogger = logger
    }

    /// Registers a new connection of `identity` with the hub (`ChatService.openSession`).
    static func open(service: ChatService, identity: Identity, sink: any EventSink, logger: Logger) async throws -> WebSocketSession {
        let connection = try await service.openSession(identity, sink: sink)
        return WebSocketSession(service: service, identity: identity, connection: connection, sink: sink, logger: logger)
    }

    /// Logs with the connection's user and hub id; builds nothing when `level` is not logged.
    func log(_ level: Logger.Level, _ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        guard serverLogger.logLevel <= level else { return }
        var metadata = metadata()
        metadata["switchboard.user"] = "\(identity.user.username)"
        metadata["switchboard.connection"] = "\(connection)"
        serverLogger.log(level: level, message(), metadata: metadata)
    }

    /// Leaves the hub: the connection's subscriptions and presence end.
    func end() {
        service.closeSession(connection)
        log(.debug, "websocket closed")
    }

    /// Why a session must end, as a close code and reason.
    struct Close: Error {
        var code: WebSocketErrorCode
        var reason: String
    }

    /// A text frame as read: its request (or why it is not one), with what an error answer names.
    struct Frame: Sendable {
        var ref: String?
        var roomId: String?
        var request: Result<ClientRequest, ProtocolError>
        var receivedAt: ContinuousClock.Instant
    }

    /// Parses a text frame.
    func read(text: String) -> Frame {
        if service.configuration.logFrames {
            log(.debug, "frame received", metadata: ["switchboard.frame": "\(text)"])
        }
        let receivedAt = ContinuousClock.now
        if let message = MessageFrameScanner.scan(text, limits: service.configuration.limits) {
            return Frame(ref: message.ref, roomId: message.roomId, request: message.request, receivedAt: receivedAt)
        }
        let parsed = IncomingFrame(bytes: text.utf8, limits: service.configuration.limits)
        return Frame(ref: parsed.ref, roomId: parsed.roomId, request: parsed.request, receivedAt: receivedAt)
    }

    /// Answers a frame at once, on the connection's event loop, when that needs nothing from the
    /// store: a frame that is not a valid request, a `ping`, a `message` to a room whose members
    /// the hub knows. False when it must be answered by ``handle(_:)``, in a task; the frame is
    /// then left unanswered, so that it is answered exactly once.
    mutating func answerNow(_ frame: Frame) -> Bool {
        switch frame.request {
        case .failure(let error):
            failed(error, frame)
        case .success(.ping(let data)):
            send(Envelope<JSONValue>(type: .pong, data: data, timestamp: WallClock.milliseconds(), ref: frame.ref))
            rateLimitedInARow = 0
        case .success(.message(let roomId, let data)):
            do throws(ProtocolError) {
                guard let message = try service.prepareMessageNow(identity, roomId: roomId, data) else { return false }
                submit(message, roomId: roomId, ref: frame.ref, receivedAt: frame.receivedAt)
                rateLimitedInARow = 0
            } catch {
                // Closing for a flood first waits for the acks of the messages accepted before it.
                if isFlood(error) { return false }
                failed(error, frame)
            }
        default:
            return false
        }
        return true
    }

    /// Answers a frame. Throws `Close` when the connection must end.
    mutating func handle(_ frame: Frame) async throws(Close) {
        do {
            let request = try frame.request.get()
            try await answer(request, ref: frame.ref, receivedAt: frame.receivedAt)
            rateLimitedInARow = 0
        } catch let error as ProtocolError {
            if isFlood(error) {
                sendError(error, ref: frame.ref, roomId: frame.roomId)
                // Messages accepted before the flood are stored: their acks go out first.
                await unanswered.waitUntilNone()
                throw Close(code: .policyViolation, reason: "too many requests over the rate limit")
            }
            failed(error, frame)
        } catch {
            log(.error, "request failed", metadata: ["switchboard.error": "\(error)"])
            failed(ProtocolError(.internal, "internal error"), frame)
        }
    }

    /// Whether `error` is the rate-limited answer that makes too many in a row.
    private func isFlood(_ error: ProtocolError) -> Bool {
        error.code == .rateLimited && rateLimitedInARow + 1 >= service.configuration.floodCloseAfter
    }

    /// Answers a request that failed, counting rate-limited ones in a row.
    private mutating func failed(_ error: ProtocolError, _ frame: Frame) {
        sendError(error, ref: frame.ref, roomId: frame.roomId)
        rateLimitedInARow = error.code == .rateLimited ? rateLimitedInARow + 1 : 0
    }

    /// Answers a binary frame: the protocol speaks text only.
    func handleBinary() {
        sendError(ProtocolError(.invalid, "binary frames are not accepted; send JSON in text frames"), ref: nil, roomId: nil)
    }

    private func answer(_ request: ClientRequest, ref: String?, receivedAt: ContinuousClock.Instant) async throws {
        let now = WallClock.milliseconds()
        switch request {
        case .ping(let data):
            send(Envelope<JSONValue>(type: .pong, data: data, timestamp: now, ref: ref))
        case .join(let roomId, let since):
            try await service.join(identity, connection: connection, sink: sink, roomId: roomId, since: since, ref: ref)
        case .leave(let roomId):
            if !service.hub.isSubscribed(connection, to: roomId) {
                // Not joined is fine; not existing is `not_found`.
                _ = try await service.roomState(roomId)
            }
            service.hub.leave(connection, roomId: roomId, now: now)
            send(Envelope(type: .ack, roomId: roomId, data: EmptyData(), timestamp: now, ref: ref))
        case .message(let roomId, let data):
            // Checked now, answered when durable: the next frame is read without waiting for the
            // commit, so one connection's messages share group commits and keep their order.
            let message = try await service.prepareMessage(identity, roomId: roomId, data)
            submit(message, roomId: roomId, ref: ref, receivedAt: receivedAt)
        case .typing(let roomId, let isTyping):
            try await service.typing(identity, roomId: roomId, isTyping: isTyping)
            send(Envelope(type: .ack, roomId: roomId, data: EmptyData(), timestamp: now, ref: ref))
        case .reaction(let roomId, let data):
            let ack = try await service.react(identity, roomId: roomId, data)
            send(Envelope(type: .ack, roomId: roomId, data: ack, timestamp: WallClock.milliseconds(), ref: ref))
        }
    }

    /// Queues a checked message for its group commit; its ack goes out once it is stored.
    private func submit(_ message: NewMessage, roomId: String, ref: String?, receivedAt: ContinuousClock.Instant) {
        let session = self
        let unanswered = self.unanswered
        let reply: MessageReply
        unanswered.add()
        if service.configuration.logFrames {
            // Through `send`, which logs every frame; after the message's event all the same.
            reply = .callback { result in
                switch result {
                case .success(let ack):
                    session.send(Envelope(type: .ack, roomId: roomId, data: ack, timestamp: WallClock.milliseconds(), ref: ref))
                case .failure(let error):
                    session.sendError(error, ref: ref, roomId: roomId)
                }
                unanswered.remove()
            }
        } else {
            // The ack is encoded and sent with the batch that publishes the message.
            reply = .socket(
                sink, ref: ref, onFailure: { error in session.sendError(error, ref: ref, roomId: roomId) }, answered: unanswered.remove)
        }
        service.submitMessage(message, receivedAt: receivedAt, reply: reply)
    }

    private func sendError(_ error: ProtocolError, ref: String?, roomId: String?) {
        service.metrics.error(error.code)
        send(Envelope(type: .error, roomId: roomId, data: error, timestamp: WallClock.milliseconds(), ref: ref))
    }

    private func send<Payload>(_ envelope: Envelope<Payload>) {
        let frame = encode(envelope)
        if service.configuration.logFrames {
            log(.debug, "frame sent", metadata: ["switchboard.frame": "\(String(buffer: frame.json))"])
        }
        sink.send(frame)
    }
}

/// How many of a session's messages wait for their answer, and who waits for none to be left.
final class UnansweredMessages: Sendable {
    private struct State {
        var count = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func add() {
        state.withLock { $0.count += 1 }
    }

    /// One answer is on its way to the socket.
    @Sendable func remove() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count -= 1
            guard state.count == 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Returns once every message added so far is answered.
    func waitUntilNone() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let none = state.withLock { state in
                if state.count == 0 { return true }
                state.waiters.append(continuation)
                return false
            }
            if none { continuation.resume() }
        }
    }
}

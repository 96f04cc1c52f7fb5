import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import SwitchboardProtocol
import WSClient

/// A client of a Switchboard server: it stays connected, sends reliably and hands the
/// application every message once, in order.
///
/// Open one with ``withClient(configuration:logger:_:)``; it connects at once, and is
/// disconnected (its outbox flushed) and its tasks ended when the closure returns:
///
/// ```swift
/// let configuration = ClientConfiguration(server: "http://127.0.0.1:3001", credentials: .token(token))
/// try await ChatClient.withClient(configuration: configuration, logger: logger) { client in
///     let room = try await client.subscribe(to: roomId)      // the room, and its messages from now on
///     let sent = try await client.send("hello", to: room.id)   // the stored message, once acknowledged
///     for await message in room.messages {
///         print("#\(message.seq) \(message.userId): \(message.content)")
///     }
/// }
/// ```
///
/// What it does for you:
/// - **Reconnects** after a drop, a server restart, or a connection its heartbeat finds dead, with
///   exponential backoff and jitter; ``status`` says where it stands.
/// - **Recovers**: it remembers each room's last `seq`, joins again with `since`, reads over HTTP
///   what a truncated replay left out, and hands over each message once, in `seq` order.
/// - **Queues**: what is sent while offline or rate limited waits in an outbox (optionally a file),
///   and goes out in order with the same `clientId`, so that nothing is lost or stored twice.
/// - **Falls back** to long polling when the WebSocket cannot be opened but HTTP works, and tries
///   the WebSocket again now and then.
/// - **Stops** for good, with one ``ConnectionStatus/failed(_:)`` status, when the server refuses
///   the credentials; it does not retry a revoked token.
public final class ChatClient: Sendable {
    /// What the client was configured with.
    public let configuration: ClientConfiguration
    let logger: Logger
    let api: HTTPAPI
    let httpClient: HTTPClient
    /// Whether ``httpClient`` is the client's own, to shut down when it stops (not one passed in and shared).
    let ownsHTTPClient: Bool
    /// Where the WebSocket and the connection relay run.
    let eventLoopGroup: any EventLoopGroup
    let hub: EventHub
    let state: Mutex<State>
    let outboxFile: OutboxFile?
    /// The loopback relay the WebSocket goes through, so that it can be cut (see ``ConnectionRelay``).
    let relayBox = Locked<ConnectionRelay?>(nil)
    /// The application asked to stop, or the client failed for good.
    let stopRequested = OneShot()
    /// Everything has stopped.
    let stopped = OneShot()
    /// Events decided under the state lock, on their way to the dispatcher. Filled without waiting
    /// (under the lock); the tasks that read the server wait with ``EventQueue/waitForSpace()`` before
    /// they read more, so it holds at most its capacity and what one frame or page adds.
    let bus: EventQueue<EventHub.Item>
    /// History pages to read: at most one per room at a time (``RoomTimeline`` asks for one, then waits).
    let fetches: AsyncStream<FetchRequest>
    let fetchContinuation: AsyncStream<FetchRequest>.Continuation

    /// Opens a client, runs `body` with it, then disconnects it and waits for all of its tasks.
    ///
    /// The client connects in the background: `body` starts at once, and what it sends is queued
    /// until the connection is up. When `body` returns or throws, ``disconnect()`` is called (unless
    /// `body` did), which waits up to ``ClientConfiguration/shutdownFlushTimeout`` for the outbox to drain.
    ///
    /// Many clients in one process (a bot per account, a bridge per network) share one `HTTPClient`
    /// and one event-loop group when they are passed in; the client then neither configures nor
    /// shuts them down. Without them, a client makes an `HTTPClient` of its own on the process's
    /// shared event-loop group, and shuts it down when it stops.
    ///
    /// ```swift
    /// let http = HTTPClient(eventLoopGroupProvider: .shared(group))
    /// try await withThrowingDiscardingTaskGroup { bots in
    ///     for configuration in botConfigurations {
    ///         bots.addTask {
    ///             try await ChatClient.withClient(configuration: configuration, httpClient: http, eventLoopGroup: group) { client in … }
    ///         }
    ///     }
    /// }
    /// try await http.shutdown()
    /// ```
    ///
    /// - Parameters:
    ///   - httpClient: An `HTTPClient` to share; `nil` makes one for this client.
    ///   - eventLoopGroup: The event loops of the WebSocket; `nil` uses those of `httpClient`, or the process's shared group.
    /// - Throws: ``ClientError`` with ``ClientError/Code/storage`` when the outbox file cannot be read;
    ///   whatever `body` throws.
    public static func withClient<Result: Sendable>(
        configuration: ClientConfiguration,
        httpClient: HTTPClient? = nil,
        eventLoopGroup: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "switchboard.client"),
        _ body: (ChatClient) async throws -> Result
    ) async throws -> Result {
        let client = try ChatClient(configuration: configuration, httpClient: httpClient, eventLoopGroup: eventLoopGroup, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            do {
                let result = try await body(client)
                _ = await client.disconnect()
                try await group.waitForAll()
                return result
            } catch {
                _ = await client.disconnect()
                try? await group.waitForAll()
                throw error
            }
        }
    }

    /// Makes a client that does nothing until ``run()``. Prefer ``withClient(configuration:httpClient:eventLoopGroup:logger:_:)``.
    ///
    /// - Parameters:
    ///   - httpClient: An `HTTPClient` shared with other clients, which this one will not shut down; `nil` makes its own.
    ///   - eventLoopGroup: The event loops of the WebSocket; `nil` uses those of `httpClient`, or the process's shared group.
    /// - Throws: ``ClientError`` with ``ClientError/Code/storage`` when the outbox file cannot be read.
    public init(
        configuration: ClientConfiguration, httpClient: HTTPClient? = nil, eventLoopGroup: (any EventLoopGroup)? = nil, logger: Logger
    ) throws(ClientError) {
        // Read first: nothing that needs closing exists yet if this throws.
        let file = configuration.outbox.file.map(OutboxFile.init(path:))
        let restored = try file?.load() ?? []
        self.outboxFile = file
        self.configuration = configuration
        self.logger = logger
        // A client of its own rather than the shared one: it fails fast when the server is down (the
        // client's backoff decides when to try again, and says so in its status), and it is shut down
        // with the client, so that no connection outlives it.
        let group = eventLoopGroup ?? httpClient?.eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.eventLoopGroup = group
        if let httpClient {
            self.httpClient = httpClient
            self.ownsHTTPClient = false
        } else {
            var httpConfiguration = HTTPClient.Configuration()
            httpConfiguration.connectionPool.retryConnectionEstablishment = false
            httpConfiguration.timeout.connect = .nanoseconds(configuration.connectTimeout.nanoseconds)
            self.httpClient = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: httpConfiguration)
            self.ownsHTTPClient = true
        }
        self.api = HTTPAPI(base: configuration.httpBase, timeout: configuration.requestTimeout, client: self.httpClient)
        var state = State(
            connection: Connection(
                machine: ConnectionStateMachine(
                    backoff: configuration.backoff, fallback: configuration.fallback, canLogInAgain: configuration.credentials.isPassword
                )
            ),
            outbox: OutboxMachine(
                capacity: configuration.outbox.capacity, maxInFlight: configuration.outbox.maxInFlight,
                maxServerFailures: configuration.outbox.maxServerFailures, restoring: restored
            )
        )
        if case .token(let token) = configuration.credentials { state.connection.token = token }
        self.state = Mutex(state)
        hub = EventHub(buffers: configuration.eventBuffers)
        bus = EventQueue(
            capacity: configuration.eventBuffers.messages, lossyCapacity: configuration.eventBuffers.live,
            overflowCapacity: configuration.eventBuffers.messages + configuration.eventBuffers.overflow)
        (fetches, fetchContinuation) = AsyncStream.makeStream(of: FetchRequest.self, bufferingPolicy: .unbounded)
        if !restored.isEmpty {
            logger.info("restored messages from the outbox file", metadata: ["switchboard.outbox.count": "\(restored.count)"])
        }
    }

    deinit {
        // A client made and dropped without run() or disconnect() still releases its HTTP client.
        if !stopped.hasFired && ownsHTTPClient { _ = httpClient.shutdown() }
    }

    /// Connects and keeps the client connected until ``disconnect()`` is called, the client fails
    /// for good, or the calling task is cancelled; returns when every task of the client has ended.
    ///
    /// Call it once. ``withClient(configuration:logger:_:)`` calls it for you.
    public func run() async {
        let (first, stopping) = state.withLock { state in
            defer { state.lifecycle.runStarted = true }
            return (!state.lifecycle.runStarted, state.lifecycle.stopping)
        }
        guard first else {
            logger.warning("ChatClient.run() called twice; the second call returns at once")
            return
        }
        // Disconnected before it ran: disconnect() did the stopping.
        guard !stopping else { return }
        logger.debug("client starting", metadata: ["switchboard.server": "\(configuration.server)"])
        await withTaskGroup(of: Void.self) { outer in
            outer.addTask { await self.dispatch() }
            await withTaskGroup(of: Void.self) { inner in
                inner.addTask { await self.connectionLoop() }
                inner.addTask { await self.fetchWorker() }
                await self.stopRequested.wait()
                await self.closeLinkGracefully()
                // The tasks that read the server end even while they wait for room (EventQueue.waitForSpace()).
                inner.cancelAll()
            }
            // Nothing reads the server any more, so what the client still holds is bounded: it is handed over
            // without waiting for readers, one of which may be the caller of disconnect(), inside its loop.
            self.hub.stopWaiting()
            self.finishStopping()
        }
        await relayBox.withLock { $0 }?.close()
        if ownsHTTPClient { try? await httpClient.shutdown() }
        logger.debug("client stopped")
        stopped.fire()
    }

    /// Stops the client: waits up to ``ClientConfiguration/shutdownFlushTimeout`` for the outbox to
    /// drain (when the client is online or reconnecting), closes the connection, ends every task
    /// and stream, and reports what could not be sent.
    ///
    /// Messages still waiting fail their ``send(_:to:replyTo:meta:clientId:)`` callers with
    /// ``ClientError/Code/shutdown``; with an outbox file they stay in it for the next client.
    /// Calling it again returns the same report.
    ///
    /// ```swift
    /// let report = await client.disconnect()
    /// if !report.isClean { print("\(report.unsent.count) messages not sent") }
    /// ```
    @discardableResult
    public func disconnect() async -> DisconnectReport {
        if let report = state.withLock({ $0.lifecycle.report }) { return report }
        await flush(timeout: configuration.shutdownFlushTimeout)
        let running = state.withLock { state in
            state.lifecycle.stopping = true
            return state.lifecycle.runStarted
        }
        stopRequested.fire()
        if running {
            await stopped.wait()
        } else {
            finishStopping()
            if ownsHTTPClient { try? await httpClient.shutdown() }
            stopped.fire()
        }
        return state.withLock { $0.lifecycle.report } ?? DisconnectReport(unsent: [], keptInFile: outboxFile != nil)
    }

    /// Waits until the outbox is empty, or `timeout` passes, or the client cannot send any more.
    func flush(timeout: Duration) async {
        let id = state.withLock { state -> Int? in
            guard !state.outbox.isEmpty, !state.connection.machine.isFinal, !state.lifecycle.stopping else { return nil }
            return state.waiters.makeID()
        }
        guard let id else { return }
        logger.debug("flushing the outbox before disconnecting")
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let now = self.state.withLock { state -> Bool in
                            if state.outbox.isEmpty || state.connection.machine.isFinal || Task.isCancelled { return true }
                            state.waiters.add(.flush(continuation), for: .flush, id: id)
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.remove(.flush, id: id) }?.fail(CancellationError())
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    /// The ends of the client: final status, waiters failed, streams finished, the report kept.
    private func finishStopping() {
        let taken = state.withLock { state -> (waiters: [Waiters.Continuation], report: DisconnectReport)? in
            guard state.lifecycle.report == nil else { return nil }
            let before = state.connection.machine.status
            _ = state.connection.machine.stop()
            let unsent = state.outbox.removeAll()
            let report = DisconnectReport(unsent: unsent, keptInFile: outboxFile != nil)
            state.lifecycle.report = report
            state.lifecycle.stopping = true
            let waiters = state.takeAllWaiters()
            if state.connection.machine.status != before {
                state.connection.statusVersion += 1
                bus.pushNow(EventHub.Item(event: .status(state.connection.machine.status), statusVersion: state.connection.statusVersion), lossy: true)
            }
            bus.finish()
            fetchContinuation.finish()
            return (waiters, report)
        }
        guard let (waiters, report) = taken else { return }
        Waiters.fail(waiters, with: ClientError(.shutdown, "the client was disconnected"))
        if !report.unsent.isEmpty {
            logger.warning(
                "disconnected with messages not sent",
                metadata: ["switchboard.outbox.count": "\(report.unsent.count)", "switchboard.outbox.file": "\(outboxFile?.path ?? "none")"]
            )
        }
    }

    /// Hands every event to the streams and listeners, in order, until the client stops.
    private func dispatch() async {
        while let item = await bus.next() {
            await hub.publish(item)
        }
        hub.finish()
    }

    // MARK: State

    /// Everything the client's tasks share, behind one lock, by concern: each part is its own struct, and
    /// the pure state machines (``ConnectionStateMachine``, ``OutboxMachine``, ``RoomTimeline``) are kept in them.
    struct State: Sendable {
        /// The connection: its state machine, credentials, and the open link.
        var connection: Connection
        /// The messages waiting to be sent.
        var outbox: OutboxMachine
        /// The rooms subscribed to or followed.
        var subscriptions = Subscriptions()
        /// Requests sent on the current connection and not yet answered.
        var requests = Requests()
        /// Every caller waiting for something: a send's ack, a join, the token, the outbox to drain, an answer.
        var waiters = Waiters()
        /// Users and room members, as learnt from the server.
        var directory = Directory()
        /// Whether the client runs, is stopping, and what it could not send.
        var lifecycle = Lifecycle()

        /// Whether the client can do nothing more.
        var isClosed: Bool { lifecycle.stopping || connection.machine.isFinal }

        /// Takes every waiter, for one failure: the requests' and the rooms' alike.
        mutating func takeAllWaiters() -> [Waiters.Continuation] {
            requests.forgetCalls()
            return waiters.takeAll()
        }
    }

    /// Where the client stands with the server.
    struct Connection: Sendable {
        var machine: ConnectionStateMachine
        var token: String?
        var user: User?
        /// The open connection, if any.
        var link: Link?
        var nextLinkID = 0
        /// Bumped at every status change, so that a status stream can tell an older status from a newer one.
        var statusVersion = 0
    }

    /// The rooms the application follows.
    struct Subscriptions: Sendable {
        var rooms: [String: RoomState] = [:]
        /// Rooms to leave on the current WebSocket, in the order they were unsubscribed.
        var leaves: [String] = []
        /// Numbers subscriptions, so that an answer meant for an earlier one is not taken for the current one.
        var nextGeneration = 0
        /// Following every room of the user (``ChatClient/followAllRooms()``).
        var follow = Follow()
    }

    /// Requests sent on the WebSocket and not yet answered, by `ref`.
    struct Requests: Sendable {
        var pending: [String: PendingRequest] = [:]
        private var nextRef = 0

        mutating func makeRef(_ prefix: String) -> String {
            nextRef += 1
            return "\(prefix)\(nextRef)"
        }

        /// Whether an answer that a caller or the outbox waits for is still to come on `link`.
        func awaitsAnswers(on link: Int) -> Bool {
            pending.values.contains { $0.link == link && $0.awaitsAnswer }
        }

        /// Forgets the requests whose callers wait in ``Waiters`` (they are failed there).
        mutating func forgetCalls() {
            for (ref, request) in pending {
                if case .call = request.kind { pending[ref] = nil }
            }
        }
    }

    /// The client's life: started, stopping, stopped.
    struct Lifecycle: Sendable {
        var runStarted = false
        var stopping = false
        /// What could not be sent, once stopped.
        var report: DisconnectReport?
    }

    /// Following every room of the user, as rooms appear and go.
    struct Follow: Sendable {
        /// Whether ``ChatClient/followAllRooms()`` was called.
        var all = false
        /// The link whose listing of rooms is done (rooms that appeared while offline are followed).
        var listedOn: Int?
        /// Rooms the application unsubscribed from: not followed again until it subscribes.
        var excluded: Set<String> = []
        /// The link on which `ready` was sent.
        var readyOn: Int?
        /// Rooms that appeared (a `room` event) before the current link's listing was done, with the event's
        /// `lastSeq`: the listing follows them (see ``ChatClient/listRoomsToFollow(on:)``).
        var appeared: [String: Int] = [:]
    }

    /// A room the application subscribed to.
    struct RoomState: Sendable {
        var timeline: RoomTimeline
        var generation: Int
        var room: Room?
        /// The link on which the room's join was sent; a new link joins again.
        var joinSentOn: Int?
        /// The link on which the room's join was acknowledged.
        var joinedOn: Int?
        /// A join that failed for a passing reason is tried again at this instant.
        var retryJoinAt: ContinuousClock.Instant?
        /// The `lastSeq` of the last join ack, until everything up to it was handed over (then `caughtUp`).
        var catchingUpTo: Int?
    }

    /// The connection in use.
    struct Link: Sendable {
        enum Kind: Sendable {
            case webSocket(WebSocketOutboundWriter)
            case polling
        }
        var id: Int
        var kind: Kind
        /// Rung when the outbox may have something to send.
        var outboxBell: Doorbell
        /// Rung when a room waits to be joined.
        var joinBell: Doorbell

        var isWebSocket: Bool {
            if case .webSocket = kind { return true }
            return false
        }
    }

    /// A request on the WebSocket waiting for its answer.
    struct PendingRequest: Sendable {
        enum Kind: Sendable {
            case join(roomId: String, generation: Int)
            case outbox(clientId: String)
            /// Sent by a caller that will wait for the answer (see ``ChatClient/request(_:roomId:data:)``).
            case awaiting
            /// Answered before its caller started waiting.
            case answered(Result<ServerEvent.Reply, ClientError>)
            /// A caller waits for the answer, in ``Waiters`` under ``Waiters/Topic/call(ref:)``.
            case call
            /// Nobody waits; the answer only matters to the logs.
            case ignore
        }
        var link: Int
        var kind: Kind

        /// Whether a caller or the outbox waits for its answer (not only the logs, and not come yet).
        var awaitsAnswer: Bool {
            switch kind {
            case .ignore, .answered: false
            case .join, .outbox, .awaiting, .call: true
            }
        }
    }

    /// Registers a request about to go out on the WebSocket. While an answer is awaited the reader
    /// reads past the bus's bound (`EventBuffers.overflow`): the answer comes after what the server
    /// sent before it, and the application may be waiting for it instead of reading.
    func register(_ request: PendingRequest, ref: String, state: inout State) {
        state.requests.pending[ref] = request
        if request.awaitsAnswer { bus.allowOverflow(true) }
    }

    /// A page of history to read.
    struct FetchRequest: Sendable {
        var roomId: String
        var after: Int
        var delay: Duration?
        /// Failed reads of this page so far, for the backoff.
        var attempt = 0
    }

    /// Runs `body` on the state; publishes the status if it changed.
    @discardableResult
    func withState<Value>(_ body: (inout State) throws -> Value) rethrows -> Value {
        try state.withLock { state in
            let before = state.connection.machine.status
            let value = try body(&state)
            let after = state.connection.machine.status
            if after != before {
                logger.info("status changed", metadata: ["switchboard.status": "\(after)"])
                state.connection.statusVersion += 1
                bus.pushNow(EventHub.Item(event: .status(after), statusVersion: state.connection.statusVersion), lossy: true)
            }
            return value
        }
    }

    /// Publishes an event; call it while holding the state lock, so that the order of events is the order of decisions.
    func emit(_ event: ClientEvent) {
        let item = EventHub.Item(event: event, statusVersion: 0)
        bus.pushNow(item, lossy: item.isLossy)
    }
}

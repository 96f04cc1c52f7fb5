import Foundation
import SwitchboardProtocol

/// Everything a ``ChatClient`` can be told, with a default for every field but the credentials.
///
/// ```swift
/// var configuration = ClientConfiguration(server: "https://chat.example.com", credentials: .token(token))
/// configuration.backoff.maxDelay = .seconds(10)
/// configuration.outbox.file = "/var/lib/mybot/outbox.jsonl"
/// ```
public struct ClientConfiguration: Sendable {
    /// The server's base URL, `http://` or `https://`; the WebSocket is `/ws` on the same host and port.
    public var server: String
    /// How to log in.
    public var credentials: Credentials
    /// How long to wait between connection attempts.
    public var backoff: Backoff = Backoff()
    /// How the client notices a connection that died without closing.
    public var heartbeat: Heartbeat = Heartbeat()
    /// What happens to messages sent while offline.
    public var outbox: Outbox = Outbox()
    /// When to give up on the WebSocket and long-poll instead.
    public var fallback: Fallback = Fallback()
    /// How long an HTTP request or a WebSocket request may wait for its answer.
    public var requestTimeout: Duration = .seconds(30)
    /// How long opening a WebSocket (TCP, then the server's answer to the HTTP upgrade) may take before the attempt is abandoned.
    public var connectTimeout: Duration = .seconds(10)
    /// How long ``ChatClient/disconnect()`` waits for the outbox to drain before giving up on it.
    public var shutdownFlushTimeout: Duration = .seconds(5)
    /// Messages fetched per HTTP page when recovering a gap (the server's maximum is 200).
    public var historyPageSize: Int = 200
    /// Largest WebSocket frame accepted from the server.
    public var maxFrameSize: Int = 1 << 22
    /// Largest `message` envelope the client sends, in bytes: set it to the server's `--max-frame-bytes`
    /// (65536 by default). The server closes a connection that sends a larger frame, so a larger message
    /// is refused at ``ChatClient/send(_:to:replyTo:meta:clientId:)`` rather than resent after every reconnection.
    public var maxMessageBytes: Int = Limits().maxFrameBytes
    /// How much each stream and listener may hold that its reader has not taken yet.
    public var eventBuffers: EventBuffers = EventBuffers()
    /// How long ``ChatClient/send(_:to:replyTo:meta:clientId:)`` and ``ChatClient/subscribe(to:after:)``
    /// wait for the server (offline, reconnecting, rate limited) before they throw ``ClientError/Code/timeout``;
    /// `nil` waits as long as the client runs. A message whose `send` timed out stays in the outbox
    /// (see ``ChatClient/withdraw(_:)``).
    public var deliveryTimeout: Duration? = nil
    /// Where the client reads, for each room, the last `seq` the application handled, to resume from
    /// there after a restart (see ``ChatClient/markHandled(_:)``); `nil` keeps no positions.
    public var positions: (any PositionStore)? = nil

    /// A configuration for `server` with `credentials` and every other field at its default.
    public init(server: String = "http://127.0.0.1:3001", credentials: Credentials) {
        self.server = server
        self.credentials = credentials
    }

    /// How a client proves who it is.
    public enum Credentials: Sendable, CustomStringConvertible {
        /// A session or API token (`POST /api/login`, `POST /api/tokens`, `switchboard tokens add`).
        case token(String)
        /// A username and password, exchanged for a session token when the client starts.
        case password(username: String, password: String)

        /// Whether the client can log in again by itself when its session token expires.
        var isPassword: Bool {
            if case .password = self { return true }
            return false
        }

        /// Never shows the secret, so that logging a configuration is safe.
        public var description: String {
            switch self {
            case .token: "token(…)"
            case .password(let username, _): "password(username: \(username), …)"
            }
        }
    }

    /// Exponential backoff with jitter between connection attempts.
    ///
    /// Attempt `n` (from 1) waits `min(maxDelay, initialDelay × factorⁿ⁻¹)`, less a random share
    /// of up to `jitter` of it, so that many clients dropped at once by a server restart do not
    /// all come back in the same instant.
    public struct Backoff: Sendable, Hashable {
        /// Wait before the first reconnection attempt.
        public var initialDelay: Duration = .milliseconds(500)
        /// Growth of the wait from one attempt to the next.
        public var factor: Double = 2
        /// Longest wait.
        public var maxDelay: Duration = .seconds(30)
        /// Share of each wait taken away at random: 0 for none, 1 for "anywhere between 0 and the wait".
        public var jitter: Double = 0.5
        /// A connection that stayed up this long counts as stable: the next drop starts again from `initialDelay`.
        public var resetAfter: Duration = .seconds(10)
        /// Attempts after which the client gives up with ``ClientError/Code/unreachable``; `nil` never gives up.
        public var maxAttempts: Int? = nil

        /// The defaults.
        public init() {}

        /// The wait before attempt `attempt` (1, 2, 3 …), for a random `unit` in `0..<1`.
        public func delay(attempt: Int, unit: Double) -> Duration {
            let exponent = Double(max(0, attempt - 1))
            let base = min(initialDelay.seconds * pow(factor, exponent), maxDelay.seconds)
            let share = min(max(jitter, 0), 1) * min(max(unit, 0), 1)
            return .seconds(max(0, base * (1 - share)))
        }
    }

    /// The client's own check of a quiet connection.
    ///
    /// When nothing has arrived for `interval`, the client sends a `ping` envelope; when `timeout`
    /// passes with still nothing, the connection is taken for dead (a half-open TCP connection, a
    /// NAT mapping that vanished) and the client reconnects.
    public struct Heartbeat: Sendable, Hashable {
        /// Quiet time after which the client pings.
        public var interval: Duration = .seconds(20)
        /// Time a ping may go unanswered.
        public var timeout: Duration = .seconds(10)

        /// The defaults.
        public init() {}
    }

    /// Messages waiting to be sent: while offline, while rate limited, and until each is acknowledged.
    public struct Outbox: Sendable, Hashable {
        /// Most messages that may wait; past it ``ChatClient/send(_:to:replyTo:meta:clientId:)`` throws ``ClientError/Code/outboxFull``.
        public var capacity: Int = 1000
        /// A file that keeps the waiting messages, so that a process that restarts sends what the
        /// last one could not, with the same `clientId`s (so nothing is stored twice). `nil` keeps them in memory only.
        /// It is a journal of JSON lines: each message queued or gone adds one line, and the file is
        /// compacted when most of its lines are dead. Written before a message is sent, not synced to disk:
        /// it survives the process, not a power cut.
        public var file: String? = nil
        /// Messages sent over the WebSocket before the first is acknowledged. 1 keeps the order strict even when the
        /// server rate-limits; more is faster but a rate-limited message may then be stored after a later one.
        public var maxInFlight: Int = 1
        /// Times a message may meet a server failure (`internal`) before it is given up and reported.
        public var maxServerFailures: Int = 5

        /// The defaults.
        public init() {}
    }

    /// Long polling instead of the WebSocket, for networks that refuse WebSocket upgrades.
    public struct Fallback: Sendable, Hashable {
        /// Whether the client may fall back to long polling at all.
        public var enabled: Bool = true
        /// WebSocket attempts that fail while HTTP works, in a row, before the client falls back.
        public var afterFailures: Int = 2
        /// While polling, how often the client tries the WebSocket again.
        public var retryWebSocketEvery: Duration = .seconds(60)
        /// How long one poll waits for events on the server (`timeoutMs`; at most 60 s).
        public var pollTimeout: Duration = .seconds(25)

        /// The defaults.
        public init() {}
    }

    /// The bounds of what the client holds for a reader that has not taken it yet: the queue between the
    /// socket and the dispatcher, and one queue per stream and per listener.
    ///
    /// The policy depends on the event. Messages and everything the application must not miss (sent and
    /// refused messages, gaps, membership changes, rooms, `caughtUp`, `ready`) are never dropped: when
    /// `messages` of them wait in one queue, the client stops reading from the server until the reader
    /// catches up (it reads on, up to `overflow` more, while an answer to a request is awaited), so a
    /// reader that cannot keep up meets the server's rule for slow clients (it is disconnected, and the
    /// client recovers the messages after it reconnects). Live-only events
    /// (typing, presence, statuses, joins and leaves of connections) never hold anything up: past
    /// `live` of them, the oldest waiting is dropped and the newest kept.
    ///
    /// So a stream that is kept and not read holds the client up once `messages` events wait in it:
    /// drop a stream you no longer read (it is then closed), and cancel listeners you no longer need.
    public struct EventBuffers: Sendable, Hashable {
        /// Most messages and other events that must not be lost, waiting in one queue.
        public var messages: Int = 1000
        /// Most live-only events waiting in one queue; past it the oldest is dropped.
        public var live: Int = 100
        /// More events the client reads past `messages` while it waits for an answer from the server
        /// (a send's ack, a join's, a reaction's), when the application has not taken what came.
        ///
        /// The answer comes after the events the server sent before it. An application that sends
        /// from its own event loop (a bot replying to a message while thousands more arrive) would
        /// otherwise wait for an ack that the client never reads. The default is about what the
        /// server itself holds for a slow client (4 MB of small messages).
        public var overflow: Int = 16_000

        /// The defaults.
        public init() {}
    }

    /// `ws://host:port/ws` or `wss://…` for the server's base URL.
    var webSocketURL: String {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        if base.hasPrefix("https://") { return "wss://" + base.dropFirst("https://".count) + "/ws" }
        if base.hasPrefix("http://") { return "ws://" + base.dropFirst("http://".count) + "/ws" }
        return "ws://" + base + "/ws"
    }

    /// The host and port the WebSocket connects to.
    var webSocketHostAndPort: (host: String, port: Int)? {
        let url = webSocketURL
        let secure = url.hasPrefix("wss://")
        var rest = url.dropFirst(secure ? 6 : 5)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        let defaultPort = secure ? 443 : 80
        if rest.hasPrefix("[") {
            // [v6]:port
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            let port = after.hasPrefix(":") ? Int(after.dropFirst()) : defaultPort
            return port.map { (host, $0) }
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let port = Int(rest[rest.index(after: colon)...]) else { return nil }
            return (String(rest[..<colon]), port)
        }
        return rest.isEmpty ? nil : (String(rest), defaultPort)
    }

    /// The server's base URL without a trailing slash.
    var httpBase: String {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        if !base.hasPrefix("http://") && !base.hasPrefix("https://") { base = "http://" + base }
        return base
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}


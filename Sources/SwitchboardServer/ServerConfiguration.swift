import SwitchboardProtocol

/// Everything `switchboard serve` can be told, with the protocol's defaults.
///
/// ```swift
/// var configuration = ServerConfiguration()
/// configuration.port = 8080
/// configuration.limits.maxContentLength = 10_000
/// ```
public struct ServerConfiguration: Sendable {
    /// Address to listen on. Loopback unless told otherwise, so that nothing is exposed by accident.
    public var host: String = "127.0.0.1"
    /// Port to listen on; 0 picks a free one.
    public var port: Int = 3001
    /// Whether anyone may create an account with `POST /api/register`.
    public var registration: Registration = .open
    /// Sizes and lengths accepted from clients.
    public var limits: Limits = Limits()
    /// `message` envelopes (WebSocket or HTTP) a user may send each second, sustained.
    public var messagesPerSecond: Double = 10
    /// `message` envelopes a user may send at once after a quiet spell.
    public var messageBurst: Double = 30
    /// `typing` envelopes a user may send each second.
    public var typingPerSecond: Double = 5
    /// `typing` envelopes a user may send at once.
    public var typingBurst: Double = 5
    /// Consecutive `rate_limited` answers after which a connection is closed with 1008.
    public var floodCloseAfter: Int = 50
    /// How long after the last `isTyping: true` the server sends `isTyping: false` itself.
    public var typingExpiry: Duration = .seconds(6)
    /// How often the server pings each WebSocket.
    public var pingInterval: Duration = .seconds(25)
    /// How long a ping may go unanswered before the connection is closed.
    public var pingTimeout: Duration = .seconds(10)
    /// Bytes that may wait unsent to one connection; past it the connection is dropped (no close
    /// frame could pass its full queue) and recovers with `join` and `since` when it comes back,
    /// so a slow client never slows a room.
    public var maxOutboundBytes: Int = 4 << 20
    /// Longest a long poll may wait (`timeoutMs` is capped to it).
    public var maxPollTimeout: Duration = .seconds(60)
    /// Default wait of a long poll without `timeoutMs`.
    public var defaultPollTimeout: Duration = .seconds(25)
    /// How long a long-polling session is kept without a poll before it counts as gone.
    public var pollSessionExpiry: Duration = .seconds(90)
    /// Events a long-polling session keeps for its next poll; past it the session is dropped.
    public var maxPollBacklog: Int = 10_000
    /// How often the server looks for revoked and expired tokens to close their connections.
    public var tokenCheckInterval: Duration = .milliseconds(500)
    /// bcrypt cost of password hashes (4 to 31; each step doubles the work).
    public var bcryptCost: UInt8 = 10
    /// Log every frame received and sent at debug level (`DEBUG=websocket:*`).
    public var logFrames: Bool = false

    // Hardening: HTTP
    /// Password hashes (bcrypt) computed at once; each takes tens of milliseconds of one core, on
    /// threads of their own so that they never delay the database readers.
    public var passwordHashThreads: Int = 1
    /// Password hashes that may wait for a thread; past it `register` and `login` answer
    /// `rate_limited`, so a flood of logins cannot queue unbounded work.
    public var passwordHashQueue: Int = 16
    /// `register` and `login` attempts a client address may make each minute (sustained and burst).
    public var authAttemptsPerMinutePerAddress: Double = 30
    /// `login` attempts against one username each minute (sustained and burst), whatever the address.
    public var authAttemptsPerMinutePerUsername: Double = 10
    /// Longest wait for the complete header of a new connection's first request.
    public var headerTimeout: Duration = .seconds(10)
    /// Longest wait for a request's complete body once its header arrived.
    public var bodyTimeout: Duration = .seconds(30)
    /// How long a keep-alive connection may wait, idle, for its next request.
    public var idleTimeout: Duration = .seconds(60)
    /// Open TCP connections (HTTP and WebSocket) one client address may hold.
    public var maxConnectionsPerAddress: Int = 64
    /// How long a graceful shutdown waits for requests and connections to finish before it closes them all.
    public var shutdownTimeout: Duration = .seconds(10)
    /// How long a session token from `register` or `login` lives; nil: forever.
    public var sessionLifetime: Duration? = .seconds(30 * 24 * 3600)
    /// API tokens (`POST /api/tokens`) one user may hold live (not revoked, not expired); one more is
    /// `conflict` until one is revoked. Session tokens from `register` and `login` do not count.
    public var maxTokensPerUser: Int = 100
    /// Long-polling sessions one user may hold; a new one past it ends the oldest.
    public var maxPollSessionsPerUser: Int = 8
    /// Bearer token that `GET /metrics` requires; nil: `/metrics` is not served.
    public var metricsToken: String? = nil
    // Hardening: WebSocket
    /// Messages accepted and waiting for their group commit, all connections together; past it a
    /// new message gets `rate_limited` (nothing accepted is dropped), so a database that falls
    /// behind cannot fill the memory.
    public var maxPendingMessages: Int = 10_000
    /// Distinct reactions one message may carry; adding another is `forbidden`.
    public var maxReactionsPerMessage: Int = 20
    /// WebSocket connections one user may hold; a new one past it closes the oldest (1008).
    public var maxConnectionsPerUser: Int = 20
    /// Rooms (group rooms) a user may create each hour, sustained and at once.
    public var roomsPerHour: Double = 20
    /// `join` envelopes a user may send each second (each stores a read marker, and a membership
    /// for a public room), sustained.
    public var joinsPerSecond: Double = 10
    /// `join` envelopes a user may send at once, so that a client following many rooms can
    /// rejoin them all after a reconnect.
    public var joinBurst: Double = 200
    /// Rooms the hub keeps in memory beyond those its connections follow.
    public var roomCacheSize: Int = 10_000

    /// Who may register.
    public enum Registration: String, Sendable, CaseIterable {
        /// Anyone may call `POST /api/register`.
        case open
        /// Only an administrator creates accounts (`switchboard users add`).
        case closed
    }

    public init() {}

    // Web
    /// Whether `/` serves the web page (a chat client for the browser) and its assets (`--web on|off`).
    public var web: Bool = true

    // WebSocket transport (issue 9)
    /// How long a connection's frames wait to go out together in one write. Zero (the default)
    /// writes once per event-loop tick whatever became ready in it; a millisecond or two lets a
    /// busy server put more frames in each write (fewer system calls), at that cost in latency.
    public var writeDelay: Duration = .zero
}

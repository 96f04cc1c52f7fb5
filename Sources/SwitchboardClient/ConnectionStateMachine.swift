/// Decides what the client's connection does next: connect, wait, poll or stop. A pure state machine.
///
/// The driver (``ChatClient``) reports what happened (an attempt failed, a connection opened or
/// ended, a wait elapsed) and performs the returned ``Action``; the machine keeps the attempt
/// count, the backoff, the fallback to long polling, and the status the application sees. It
/// does no I/O and reads no clock: instants are passed in and randomness comes from the caller's
/// generator, so that tests can drive every path.
///
/// ```
///            start ─▶ authenticate ─▶ connectWebSocket ─▶ (open) connected ──drop──▶ wait(backoff) ─┐
///                          ▲              │  refused while HTTP works, N times                    │
///                          │              ▼                                                       │
///                          │          startPolling ──retry timer──▶ connectWebSocket ◀────────────┘
///     unauthorized anywhere ─▶ fail (final)          stop anywhere ─▶ stop (final)
/// ```
struct ConnectionStateMachine: Sendable {
    /// What the driver does next.
    enum Action: Equatable, Sendable {
        /// Log in, or check the token over HTTP, before the first WebSocket attempt.
        case authenticate
        /// Open the WebSocket.
        case connectWebSocket
        /// Wait, then report ``waitElapsed()``.
        case wait(Duration)
        /// Start a long-polling session.
        case startPolling
        /// Stop for good with this error.
        case fail(ClientError)
        /// Stop for good: the application asked.
        case stop
    }

    /// Why a WebSocket could not be opened, as the driver found out.
    enum ConnectFailure: Equatable, Sendable {
        /// The server refused the credentials (HTTP 401 on the upgrade, the login, or `/api/me`).
        case unauthorized
        /// The WebSocket failed (the upgrade was refused or the connection broke during it) while HTTP works.
        case webSocketUnavailable
        /// Neither the WebSocket nor HTTP answered: the server is down or unreachable.
        case unreachable
    }

    /// Why an open WebSocket ended.
    enum Ending: Equatable, Sendable {
        /// The server closed it (restart 1001, flood 1008, …) or the TCP connection broke.
        case dropped
        /// The client's heartbeat found it dead.
        case heartbeatTimeout
        /// The token was revoked or expired (close code 4001, or 401 over HTTP).
        case unauthorized
    }

    /// Why a long-polling session ended.
    enum PollEnding: Equatable, Sendable {
        /// Time to try the WebSocket again.
        case retryWebSocket
        /// HTTP failed, or the server forgot the session.
        case failed
        /// The token was refused.
        case unauthorized
    }

    private enum State: Equatable, Sendable {
        case idle
        case authenticating
        case connecting
        case open(since: ContinuousClock.Instant)
        case waiting
        case polling
        case failed(ClientError)
        case stopped
    }

    private let backoff: ClientConfiguration.Backoff
    private let fallback: ClientConfiguration.Fallback
    private var state: State = .idle
    /// Failed attempts since the last stable connection.
    private var attempts = 0
    /// WebSocket failures in a row while HTTP worked.
    private var webSocketFailures = 0
    /// Whether the client fell back to polling; a WebSocket failure then goes straight back to polling.
    private var fallenBack = false
    /// Whether the credentials have been checked once.
    private var authenticated = false
    /// Whether the client can get a new token by itself (it holds a password).
    private let canLogInAgain: Bool
    /// Whether it logged in again since the last connection opened: a token refused right after a fresh
    /// login is not an expiry, and the client stops rather than loop.
    private var loggedInAgain = false

    /// What the application sees.
    private(set) var status: ConnectionStatus = .connecting

    /// - Parameter canLogInAgain: The client holds a password: a refused token (expired, say) leads to a
    ///   new login rather than to the end.
    init(backoff: ClientConfiguration.Backoff, fallback: ClientConfiguration.Fallback, canLogInAgain: Bool = false) {
        self.backoff = backoff
        self.fallback = fallback
        self.canLogInAgain = canLogInAgain
    }

    /// The client starts.
    mutating func start() -> Action {
        guard state == .idle else { return .stop }
        state = .authenticating
        status = .connecting
        return .authenticate
    }

    /// The credentials were checked: the server answered, and accepted them.
    mutating func authenticated(at now: ContinuousClock.Instant) -> Action {
        guard state == .authenticating else { return finalAction }
        authenticated = true
        state = .connecting
        return .connectWebSocket
    }

    /// Checking the credentials failed.
    mutating func authenticationFailed(_ failure: ConnectFailure, using generator: inout some RandomNumberGenerator) -> Action {
        guard state == .authenticating else { return finalAction }
        switch failure {
        case .unauthorized:
            return fail(ClientError(.unauthorized, "the server refused the credentials"))
        case .webSocketUnavailable, .unreachable:
            return retry(using: &generator)
        }
    }

    /// The WebSocket opened.
    mutating func webSocketOpened(at now: ContinuousClock.Instant) {
        guard state == .connecting else { return }
        state = .open(since: now)
        loggedInAgain = false
        webSocketFailures = 0
        fallenBack = false
        status = .connected
    }

    /// The WebSocket could not be opened.
    mutating func webSocketFailed(_ failure: ConnectFailure, using generator: inout some RandomNumberGenerator) -> Action {
        guard state == .connecting else { return finalAction }
        switch failure {
        case .unauthorized:
            return logInAgain() ?? fail(ClientError(.unauthorized, "the server refused the token"))
        case .webSocketUnavailable:
            webSocketFailures += 1
            if fallback.enabled && (fallenBack || webSocketFailures >= max(1, fallback.afterFailures)) {
                return startPolling()
            }
            return retry(using: &generator)
        case .unreachable:
            return retry(using: &generator)
        }
    }

    /// The open WebSocket ended.
    mutating func webSocketEnded(_ ending: Ending, at now: ContinuousClock.Instant, using generator: inout some RandomNumberGenerator) -> Action {
        guard case .open(let since) = state else { return finalAction }
        if ending == .unauthorized {
            return logInAgain() ?? fail(ClientError(.unauthorized, "the server closed the connection: the token was revoked or expired"))
        }
        // A connection that lasted is a fresh start; one that dies at once keeps the backoff growing,
        // so that a server that accepts and drops every connection is not hammered.
        if now - since >= backoff.resetAfter { attempts = 0 }
        return retry(using: &generator)
    }

    /// The long-polling session ended.
    mutating func pollingEnded(_ ending: PollEnding, using generator: inout some RandomNumberGenerator) -> Action {
        guard state == .polling else { return finalAction }
        switch ending {
        case .unauthorized:
            return logInAgain() ?? fail(ClientError(.unauthorized, "the server refused the token"))
        case .retryWebSocket:
            state = .connecting
            return .connectWebSocket
        case .failed:
            fallenBack = false
            webSocketFailures = 0
            return retry(using: &generator)
        }
    }

    /// A polling session got its cursor.
    mutating func pollingStarted() {
        guard state == .polling else { return }
        status = .polling
    }

    /// A poll was answered: events flow again, and the backoff starts over. (Not at the cursor alone:
    /// a session whose polls keep failing must keep backing off, and reach `maxAttempts`.)
    mutating func pollAnswered() {
        guard state == .polling else { return }
        attempts = 0
    }

    /// The wait of a ``Action/wait(_:)`` is over.
    mutating func waitElapsed() -> Action {
        guard state == .waiting else { return finalAction }
        if !authenticated {
            state = .authenticating
            return .authenticate
        }
        state = .connecting
        return .connectWebSocket
    }

    /// The application disconnects.
    mutating func stop() -> Action {
        switch state {
        case .failed(let error): return .fail(error)
        default:
            state = .stopped
            status = .disconnected
            return .stop
        }
    }

    /// Whether the machine has stopped for good.
    var isFinal: Bool {
        switch state {
        case .failed, .stopped: true
        default: false
        }
    }

    private var finalAction: Action {
        switch state {
        case .failed(let error): .fail(error)
        default: .stop
        }
    }

    private mutating func fail(_ error: ClientError) -> Action {
        state = .failed(error)
        status = .failed(error)
        return .fail(error)
    }

    /// A refused token, with a password at hand: log in again, once per connection.
    private mutating func logInAgain() -> Action? {
        guard canLogInAgain, !loggedInAgain else { return nil }
        loggedInAgain = true
        authenticated = false
        state = .authenticating
        status = .reconnecting(attempt: attempts + 1, nextDelay: .zero)
        return .authenticate
    }

    private mutating func startPolling() -> Action {
        fallenBack = true
        state = .polling
        return .startPolling
    }

    private mutating func retry(using generator: inout some RandomNumberGenerator) -> Action {
        attempts += 1
        if let maxAttempts = backoff.maxAttempts, attempts > maxAttempts {
            return fail(ClientError(.unreachable, "gave up after \(maxAttempts) attempts to reach the server"))
        }
        let delay = backoff.delay(attempt: attempts, unit: Double.random(in: 0..<1, using: &generator))
        state = .waiting
        status = .reconnecting(attempt: attempts, nextDelay: delay)
        return .wait(delay)
    }
}

import SwitchboardClient
import SwitchboardProtocol

/// The configuration of an exec plugin: the program to run and how to keep it running.
///
/// Only `command` is required. Every number of seconds is above 0 and at most 86400 (a day); a
/// configuration read from YAML or JSON with a value out of range is refused, naming the field.
///
/// ```yaml
/// plugins:
///   - plugin: exec
///     name: pybot
///     config:
///       command: [python3, Bots/python-example/bot.py]
///       config: { greeting: "hello" }     # handed to the program in the agent's hello
/// ```
public struct ExecConfiguration: Sendable, Hashable, Decodable {
    /// The program and its arguments. A program without a `/` is looked up on `PATH`.
    public var command: [String]
    /// The folder the program runs in; the agent's when `nil`.
    public var workingDirectory: String? = nil
    /// Variables added to the agent's environment for the program.
    public var environment: [String: String] = [:]
    /// Any JSON value, handed to the program as `config` in the agent's `hello`.
    public var config: JSONValue? = nil
    /// Seconds before the first restart of a program that ended.
    public var restartDelay: Double = 0.5
    /// The longest wait between restarts, in seconds; waits double up to it.
    public var maxRestartDelay: Double = 30
    /// Seconds of running after which a program counts as stable, and the next wait starts again
    /// from `restartDelay`.
    public var stableAfter: Double = 30
    /// Seconds the program has to answer the agent's `hello`.
    public var helloTimeout: Double = 10
    /// Seconds a program has to end after `SIGTERM`, before `SIGKILL`.
    public var stopTimeout: Double = 5
    /// Events held for a program that is slow or restarting; more are dropped and logged.
    /// 1 to 1000000.
    public var queueLimit: Int = 256
    /// The longest line read from the program, in bytes; longer ones are dropped and logged.
    /// 1 to 67108864 (64 MiB).
    public var maxLineBytes: Int = 1 << 20

    /// A configuration running `command`, with the defaults for the rest.
    public init(command: [String]) {
        self.command = command
    }

    private enum CodingKeys: String, CodingKey {
        case command, workingDirectory, environment, config, restartDelay, maxRestartDelay, stableAfter
        case helloTimeout, stopTimeout, queueLimit, maxLineBytes
    }

    /// Reads a configuration; a missing field keeps its default.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        command = try container.decode([String].self, forKey: .command)
        guard !command.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: .command, in: container,
                debugDescription: "`command` is empty; give the program and its arguments, e.g. [python3, bot.py]"
            )
        }
        workingDirectory = try container.decodeIfPresent(String.self, forKey: .workingDirectory)
        environment = try container.decodeIfPresent([String: String].self, forKey: .environment) ?? [:]
        config = try container.decodeIfPresent(JSONValue.self, forKey: .config)
        restartDelay = try seconds(.restartDelay, in: container) ?? restartDelay
        maxRestartDelay = try seconds(.maxRestartDelay, in: container) ?? maxRestartDelay
        stableAfter = try seconds(.stableAfter, in: container) ?? stableAfter
        helloTimeout = try seconds(.helloTimeout, in: container) ?? helloTimeout
        stopTimeout = try seconds(.stopTimeout, in: container) ?? stopTimeout
        queueLimit = try count(.queueLimit, upTo: Self.maxQueueLimit, in: container) ?? queueLimit
        maxLineBytes = try count(.maxLineBytes, upTo: Self.maxLineBytesLimit, in: container) ?? maxLineBytes
    }

    /// The longest wait a configuration may give, in seconds: a day. Larger values would overflow
    /// a `Duration` (1e300) and mean "never" anyway.
    static let maxSeconds: Double = 86400
    /// The most events a queue may hold.
    static let maxQueueLimit = 1_000_000
    /// The longest line a configuration may allow: 64 MiB.
    static let maxLineBytesLimit = 64 << 20

    private func seconds(_ key: CodingKeys, in container: KeyedDecodingContainer<CodingKeys>) throws -> Double? {
        guard let value = try container.decodeIfPresent(Double.self, forKey: key) else { return nil }
        // Written so that NaN fails too.
        guard value > 0, value <= Self.maxSeconds else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: container, debugDescription: "`\(key.stringValue)` must be above 0 and at most \(Int(Self.maxSeconds)) seconds, not \(value)")
        }
        return value
    }

    private func count(_ key: CodingKeys, upTo limit: Int, in container: KeyedDecodingContainer<CodingKeys>) throws -> Int? {
        guard let value = try container.decodeIfPresent(Double.self, forKey: key) else { return nil }
        // Checked as a Double first: Int(1e20) or Int(.infinity) would trap.
        guard value >= 1, value <= Double(limit), value.rounded() == value else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "`\(key.stringValue)` must be a whole number from 1 to \(limit), not \(value)")
        }
        return Int(value)
    }

    /// The restart waits as the client's backoff (without jitter: one program, nobody to spread).
    var backoff: ClientConfiguration.Backoff {
        var backoff = ClientConfiguration.Backoff()
        backoff.initialDelay = .seconds(restartDelay)
        backoff.maxDelay = .seconds(maxRestartDelay)
        backoff.resetAfter = .seconds(stableAfter)
        backoff.jitter = 0
        return backoff
    }
}

/// When to start a program again after it ended: waits that grow with each quick failure, and start
/// over after a run that lasted (``ClientConfiguration/Backoff/resetAfter``).
public struct RestartSchedule: Sendable, Hashable {
    /// The waits.
    public let backoff: ClientConfiguration.Backoff
    /// Restarts since the last stable run.
    public private(set) var attempt = 0

    /// A schedule with `backoff`'s waits.
    public init(backoff: ClientConfiguration.Backoff) {
        self.backoff = backoff
    }

    /// The program ended after running for `ranFor`: the wait before starting it again.
    public mutating func ended(after ranFor: Duration, unit: Double = 0) -> Duration {
        if ranFor >= backoff.resetAfter { attempt = 0 }
        attempt += 1
        return backoff.delay(attempt: attempt, unit: unit)
    }
}

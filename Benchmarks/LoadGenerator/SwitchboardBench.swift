import ArgumentParser
import Foundation

/// `switchboard-bench`: the load generator of Switchboard, for any server that speaks its protocol.
@main
struct SwitchboardBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "Load generator and benchmarks for servers that speak the Switchboard protocol.",
        discussion: """
            Each scenario sets up its users (registered through the API, or read from --tokens-file) and rooms, \
            drives the server over WebSockets from event-loop threads, prints a progress line on standard error \
            and a table (or --json) at the end. Server CPU and memory come from /proc/PID: give --server-pid, let \
            the generator find the process listening on a local port, or --start-server.

            Throughput runs need the server's per-user rate limit out of the way: --start-server passes \
            --messages-per-second 1000000 --message-burst 1000000 --bcrypt-cost 4, and lifts the limits on connections, \
            logins and password hashes per address, to `switchboard serve`.
            """,
        subcommands: [Fanout.self, Connections.self, Writes.self, Recovery.self]
    )
}

/// Where the server is, and how the generator runs.
struct TargetOptions: ParsableArguments {
    @Option(help: "The server's HTTP base URL; its WebSocket is /ws under it.")
    var url: String = "http://127.0.0.1:3001"

    @Option(help: "Users to act as, one a line: 'USER_ID TOKEN' or 'TOKEN'. More are registered when it has too few.")
    var tokensFile: String?

    @Option(help: "Write the run's users to this file, to reuse with --tokens-file.")
    var saveTokens: String?

    @Option(help: "The server's pid, for its CPU time and memory (/proc/PID). Found from a local URL's port when not given.")
    var serverPid: Int32?

    @Flag(help: "Start the bundled server (switchboard serve) on a free port with a fresh database, with rate limits raised.")
    var startServer = false

    @Option(help: "The switchboard binary for --start-server (default: .build/release/switchboard or .build-release/release/switchboard).")
    var serverBinary: String?

    @Option(help: "Start any server with this shell command instead; {port}, {database} and {dir} are replaced.")
    var serverCommand: String?

    @Option(name: .customLong("server-arg"), help: "One more argument for the bundled server (repeat it).")
    var serverArguments: [String] = []

    @Option(help: "The started server's database ({database}), e.g. a postgres:// URL of an empty database; default: a fresh SQLite file.")
    var database: String?

    @Option(help: "Event-loop threads of the generator.")
    var threads: Int = 1

    @Option(help: "WebSocket upgrades in flight at once while connecting.")
    var connectConcurrency: Int = 256

    @Option(help: "Prefix of the user names the generator registers (default: bench-RANDOM).")
    var userPrefix: String?

    @Flag(help: "Print the results as JSON on standard output.")
    var json = false

    @Flag(help: "No progress line.")
    var quiet = false

    var environment: EnvironmentOptions {
        var options = EnvironmentOptions()
        options.url = url
        options.tokensFile = tokensFile
        options.saveTokens = saveTokens
        options.serverPid = serverPid
        options.startServer = startServer
        options.serverBinary = serverBinary
        options.serverCommand = serverCommand
        options.serverArguments = serverArguments
        options.database = database
        options.threads = threads
        options.progress = !quiet
        options.userPrefix = userPrefix
        options.connectConcurrency = connectConcurrency
        return options
    }

    func emit(_ report: some ScenarioReport) {
        Progress.write((json ? report.json : report.table) + "\n", to: 1)
    }
}

/// Knobs shared by the two messaging scenarios.
struct MessagingOptions: ParsableArguments {
    @Option(help: "Messages a second, all senders together; 0 sends as fast as acks allow (see --window).")
    var rate: Double = 0

    @Option(help: "Messages in flight per sender when --rate is 0.")
    var window: Int?

    @Option(help: "Most unacked messages per sender at a fixed --rate, after which it waits.")
    var maxInFlight: Int = 1024

    @Option(help: "Bytes of content per message.")
    var size: Int = 100

    @Option(help: "Seconds measured.")
    var duration: Double?

    @Option(help: "Seconds of sending before measuring.")
    var warmup: Double?

    @Option(help: "Longest wait, after sending stops, for the last acks and deliveries.")
    var drainTimeout: Double = 10

    @Flag(inversion: .prefixedNo, help: "Give each message a clientId, as real clients do.")
    var clientIds = true
}

struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "C clients in R rooms; S senders; deliveries a second, send-to-receive latency at every member, loss and duplicates.")

    @OptionGroup var target: TargetOptions
    @OptionGroup var messaging: MessagingOptions

    @Option(help: "Connected clients, each its own user; client i is in room i % rooms.")
    var clients: Int = 1000

    @Option(help: "Rooms; every client joins its room.")
    var rooms: Int = 10

    @Option(help: "Senders, spread evenly over the rooms (they receive too).")
    var senders: Int = 100

    func setup() -> MessagingSetup {
        MessagingSetup(
            clients: clients, rooms: rooms, senders: senders, rate: messaging.rate, window: messaging.window ?? 4,
            maxInFlight: messaging.maxInFlight, size: messaging.size, clientIds: messaging.clientIds,
            duration: messaging.duration ?? 30, warmup: messaging.warmup ?? 5, drainTimeout: messaging.drainTimeout)
    }

    func run() async throws {
        let setup = setup()
        try setup.validate()
        let report = try await BenchEnvironment.with(target.environment) { environment in
            MessagingReport(scenario: "fanout", outcome: try await MessagingRun.run(setup, in: environment, label: "fanout"), environment: environment)
        }
        target.emit(report)
    }
}

struct Writes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "N concurrent senders, each in a room of its own; durable acked messages a second and ack latency.")

    @OptionGroup var target: TargetOptions
    @OptionGroup var messaging: MessagingOptions

    @Option(help: "Concurrent senders, each a connection and a user.")
    var senders: Int = 200

    @Option(help: "Rooms the senders are spread over (default: one each).")
    var rooms: Int?

    func setup() -> MessagingSetup {
        MessagingSetup(
            clients: senders, rooms: rooms ?? senders, senders: senders, rate: messaging.rate, window: messaging.window ?? 1,
            maxInFlight: messaging.maxInFlight, size: messaging.size, clientIds: messaging.clientIds,
            duration: messaging.duration ?? 20, warmup: messaging.warmup ?? 3, drainTimeout: messaging.drainTimeout)
    }

    func run() async throws {
        let setup = setup()
        try setup.validate()
        let report = try await BenchEnvironment.with(target.environment) { environment in
            MessagingReport(scenario: "writes", outcome: try await MessagingRun.run(setup, in: environment, label: "writes"), environment: environment)
        }
        target.emit(report)
    }
}

struct Connections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "N authenticated idle WebSockets; set-up rate and latency, server memory and CPU per connection.")

    @OptionGroup var target: TargetOptions

    @Option(help: "Connections to open.")
    var connections: Int = 10_000

    @Option(help: "Users they belong to; 0 gives each connection a user of its own.")
    var users: Int = 0

    @Option(help: "New connections a second; 0 opens them as fast as --connect-concurrency allows.")
    var rate: Double = 0

    @Option(help: "Seconds after the last connection before reading the server's memory.")
    var settle: Double = 2

    @Option(help: "Seconds to hold the connections idle afterwards.")
    var hold: Double = 5

    func run() async throws {
        let setup = ConnectionsSetup(connections: connections, users: users, rate: rate, settle: settle, hold: hold)
        let report = try await BenchEnvironment.with(target.environment) { environment in
            try await ConnectionsScenario.run(setup, in: environment)
        }
        target.emit(report)
    }
}

struct Recovery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A rejoin that replays K missed messages; and C clients coming back after a server restart (needs --start-server or --server-command).")

    @OptionGroup var target: TargetOptions

    @Option(help: "Messages missed before each rejoin (K).")
    var replay: Int = 1000

    @Option(help: "Rejoins measured.")
    var iterations: Int = 20

    @Option(help: "Users that post the missed messages.")
    var writers: Int = 10

    @Option(help: "Clients joined when the server restarts (C); 0 skips the restart.")
    var clients: Int = 1000

    @Option(help: "Rooms of those clients.")
    var rooms: Int = 10

    @Option(help: "Mean milliseconds between a client's reconnect attempts (jittered 0.5x to 1.5x).")
    var retryMs: Int = 100

    func run() async throws {
        let setup = RecoverySetup(
            replay: replay, iterations: iterations, writers: writers, clients: clients, rooms: rooms, retryMilliseconds: retryMs)
        let report = try await BenchEnvironment.with(target.environment) { environment in
            try await RecoveryScenario.run(setup, in: environment)
        }
        target.emit(report)
    }
}

import Foundation
import Histogram

/// `connections`: many authenticated idle WebSockets; set-up rate and latency, and the server's
/// memory and CPU per connection.
struct ConnectionsSetup: Codable, Sendable {
    var connections: Int = 10_000
    /// Users the connections are spread over; 0 gives each connection a user of its own.
    var users: Int = 0
    /// New connections a second; 0 opens them as fast as `concurrency` upgrades in flight allow.
    var rate: Double = 0
    /// Seconds to wait after the last connection before reading the server's memory.
    var settle: Double = 2
    /// Seconds to keep the connections open, idle, afterwards (checking none is dropped).
    var hold: Double = 5
}

struct ConnectionsReport: ScenarioReport {
    var scenario = "connections"
    var machine: MachineInfo
    var server: ServerDescription
    var generatorThreads: Int
    var configuration: ConnectionsSetup
    var concurrency: Int
    var opened: Int
    var failures: [String: Int]
    /// Connections opened per second while opening them all.
    var setupRate: Double
    var setupSeconds: Double
    /// From the connect call to the `101` answer.
    var setupLatency: LatencySummary
    /// The server's resident memory before and after opening them, after holding them, and after closing them.
    var serverRSSBefore: Int?
    var serverRSSOpen: Int?
    var serverRSSHeld: Int?
    var serverRSSClosed: Int?
    /// `(open - before) / opened`.
    var serverBytesPerConnection: Double?
    var closedDuringHold: Int
    var closeCodes: [String: Int]
    /// CPU while opening; per connection.
    var cpu: CPUFigures
    var generatorRSSOpen: Int?

    var rows: [(String, String)] {
        var rows = contextRows(machine: machine, server: server, threads: generatorThreads)
        let users = configuration.users == 0 ? configuration.connections : configuration.users
        let pace = configuration.rate > 0 ? "at most \(grouped(configuration.rate))/s" : "as fast as \(concurrency) upgrades in flight allow"
        rows.append(("load", "\(grouped(configuration.connections)) authenticated idle WebSockets of \(grouped(users)) users, \(pace)"))
        rows.append(("opened / failed", "\(grouped(opened)) / \(grouped(failures.values.reduce(0, +)))\(failures.isEmpty ? "" : " (\(countsText(failures)))")"))
        rows.append(("set-up rate", "\(grouped(setupRate)) connections/s (\(String(format: "%.2f", setupSeconds)) s for all)"))
        rows.append(("set-up latency", setupLatency.text))
        func mb(_ bytes: Int?) -> String { bytes.map { String(format: "%.1f MB", Double($0) / 1_048_576) } ?? "?" }
        if serverRSSBefore != nil {
            rows.append(("server memory", "\(mb(serverRSSBefore)) before, \(mb(serverRSSOpen)) open, \(mb(serverRSSHeld)) after \(String(format: "%.0f", configuration.hold)) s idle, \(mb(serverRSSClosed)) closed"))
            rows.append(("server memory per connection", serverBytesPerConnection.map { String(format: "%.1f KB", $0 / 1024) } ?? "?"))
        } else {
            rows.append(("server memory", "unknown (give --server-pid, or --start-server)"))
        }
        rows.append(("dropped while idle", "\(closedDuringHold)\(closeCodes.isEmpty ? "" : " (codes: \(countsText(closeCodes)))")"))
        rows += cpu.rows
        if let generatorRSSOpen { rows.append(("generator memory", String(format: "%.1f MB with all open", Double(generatorRSSOpen) / 1_048_576))) }
        return rows
    }
}

enum ConnectionsScenario {
    static func run(_ setup: ConnectionsSetup, in environment: BenchEnvironment) async throws -> ConnectionsReport {
        guard setup.connections > 0, setup.users >= 0 else { throw BenchError("connections must be positive") }
        let needed = setup.connections + 100
        if environment.openFileLimit > 0 && environment.openFileLimit < needed {
            environment.progress.note("warning: the open-file limit is \(environment.openFileLimit); \(setup.connections) connections need more (ulimit -n)")
        }
        let userCount = setup.users == 0 ? setup.connections : min(setup.users, setup.connections)
        let accounts = try await environment.accounts(userCount)
        let plans = (0..<setup.connections).map { ClientPlan(index: $0, account: accounts[$0 % userCount]) }
        let pid = environment.serverPid

        try await Task.sleep(for: .seconds(1))
        let rssBefore = pid.flatMap { ProcFS.residentBytes(pid: $0) }
        let cpuStart = CPUSample.take(serverPid: pid, threads: true)
        let outcome = try await environment.connectAll(plans, rate: setup.rate, label: "connections: opening")
        let cpuEnd = CPUSample.take(serverPid: pid, threads: true)
        environment.progress.note(String(format: "opened %d connections in %.2f s (%.0f/s), %d failed", outcome.opened, outcome.seconds, Double(outcome.opened) / max(outcome.seconds, 0.001), outcome.failed))

        try await Task.sleep(for: .seconds(setup.settle))
        let rssOpen = pid.flatMap { ProcFS.residentBytes(pid: $0) }
        let generatorRSS = ProcFS.residentBytes(pid: ProcFS.ownPid)
        let holdEnd = ContinuousClock.now + .seconds(setup.hold)
        try await environment.monitor(until: holdEnd) { now, _, _, server, generator in
            "connections: holding \(outcome.opened - now.unexpectedCloses) idle  dropped \(now.unexpectedCloses)  \(cpuText(server, generator))"
        }
        let rssHeld = pid.flatMap { ProcFS.residentBytes(pid: $0) }
        let totals = try await environment.pool.snapshot()
        environment.progress.finish()
        try await environment.pool.closeAll()
        try await Task.sleep(for: .seconds(1))
        let rssClosed = pid.flatMap { ProcFS.residentBytes(pid: $0) }

        var perConnection: Double?
        if let rssBefore, let rssOpen, outcome.opened > 0 { perConnection = Double(rssOpen - rssBefore) / Double(outcome.opened) }
        return ConnectionsReport(
            machine: environment.machine, server: environment.serverDescription, generatorThreads: environment.pool.workers.count,
            configuration: setup, concurrency: environment.options.connectConcurrency, opened: outcome.opened, failures: outcome.failures,
            setupRate: Double(outcome.opened) / max(outcome.seconds, 0.001), setupSeconds: outcome.seconds,
            setupLatency: LatencySummary(outcome.latency), serverRSSBefore: rssBefore, serverRSSOpen: rssOpen, serverRSSHeld: rssHeld,
            serverRSSClosed: rssClosed, serverBytesPerConnection: perConnection, closedDuringHold: totals.unexpectedCloses,
            closeCodes: Dictionary(uniqueKeysWithValues: totals.closeCodes.map { ("\($0.key)", $0.value) }),
            cpu: CPUFigures(from: cpuStart, to: cpuEnd, unit: "connection", units: outcome.opened), generatorRSSOpen: generatorRSS)
    }
}

import Foundation

/// A report that prints as a table and encodes as JSON.
protocol ScenarioReport: Codable, Sendable {
    var scenario: String { get }
    var rows: [(String, String)] { get }
}

extension ScenarioReport {
    /// The human table: one figure a line.
    var table: String {
        let width = rows.map(\.0.count).max() ?? 0
        var text = "\n\(scenario)\n" + String(repeating: "─", count: max(scenario.count, 40)) + "\n"
        for (name, value) in rows {
            text += name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value + "\n"
        }
        return text
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Rows common to every report: what ran where.
func contextRows(machine: MachineInfo, server: ServerDescription, threads: Int) -> [(String, String)] {
    var serverText = server.url
    if let pid = server.pid { serverText += " (pid \(pid)\(server.threads.map { ", \($0) threads" } ?? ""))" }
    if server.startedByGenerator { serverText += ", started by the generator" }
    return [
        ("machine", "\(machine.cpus) CPUs, \(machine.cpuModel), \(machine.memoryMB) MB, load \(machine.loadAverage)"),
        ("server", serverText),
        ("generator", "\(threads) event-loop thread\(threads == 1 ? "" : "s")"),
    ]
}

func countsText(_ counts: [String: Int]) -> String {
    counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
}

/// `fanout` and `writes`.
struct MessagingReport: ScenarioReport {
    var scenario: String
    var machine: MachineInfo
    var server: ServerDescription
    var generatorThreads: Int
    var configuration: MessagingSetup
    var membersPerRoom: Int
    var measuredSeconds: Double
    /// Messages received by members during the measurement window, per second.
    var deliveriesPerSecond: Double
    /// Messages acked during the measurement window (sent in it), per second.
    var ackedPerSecond: Double
    /// Send to receive at every member, messages sent in the window.
    var latency: LatencySummary
    /// Send to ack, messages sent in the window.
    var ackLatency: LatencySummary
    var sent: Int
    var acked: Int
    var failed: Int
    var deliveries: Int
    var expectedDeliveries: Int
    /// Acked messages some member never received.
    var lost: Int
    /// Second copies received.
    var duplicates: Int
    /// Messages received that were never acked.
    var unacked: Int
    var errors: [String: Int]
    var unexpectedCloses: Int
    var closeCodes: [String: Int]
    var connectFailures: [String: Int]
    var joinFailures: [String: Int]
    var foreignMessages: Int
    var cpu: CPUFigures
    /// Server CPU per stored message, user plus system, µs.
    var serverMicrosecondsPerMessage: Double?
    var drained: Bool
    var setupSeconds: Double

    init(scenario: String, outcome: MessagingOutcome, environment: BenchEnvironment) {
        let totals = outcome.totals
        let setup = outcome.setup
        self.scenario = scenario
        machine = environment.machine
        server = environment.serverDescription
        generatorThreads = environment.pool.workers.count
        configuration = setup
        membersPerRoom = setup.clients / setup.rooms
        measuredSeconds = outcome.measuredSeconds
        deliveriesPerSecond = Double(totals.deliveriesInWindow) / max(outcome.measuredSeconds, 0.001)
        ackedPerSecond = Double(totals.ackedInWindow) / max(outcome.measuredSeconds, 0.001)
        latency = LatencySummary(totals.latency)
        ackLatency = LatencySummary(totals.ackLatency)
        sent = totals.sent
        acked = totals.acked
        failed = totals.failed
        deliveries = totals.deliveries
        expectedDeliveries = totals.expectedDeliveries
        lost = outcome.lost
        duplicates = totals.duplicates
        unacked = outcome.unacked
        errors = totals.errors
        unexpectedCloses = totals.unexpectedCloses
        closeCodes = Dictionary(uniqueKeysWithValues: totals.closeCodes.map { ("\($0.key)", $0.value) })
        connectFailures = outcome.connect.failures
        joinFailures = outcome.joinFailures
        foreignMessages = totals.foreignMessages
        let isWrites = scenario == "writes"
        let units = isWrites ? totals.ackedInWindow : totals.deliveriesInWindow
        cpu = CPUFigures(from: outcome.cpu, to: outcome.cpuEnd, unit: isWrites ? "message stored" : "delivery", units: units)
        if let user = cpu.serverUserSeconds, let system = cpu.serverSystemSeconds, totals.ackedInWindow > 0 {
            serverMicrosecondsPerMessage = (user + system) * 1e6 / Double(totals.ackedInWindow)
        }
        drained = outcome.drained
        setupSeconds = outcome.setupSeconds
    }

    var rows: [(String, String)] {
        let setup = configuration
        let pace = setup.rate > 0
            ? "\(grouped(setup.rate)) messages/s in total (open loop)"
            : "as fast as acks allow, \(setup.window) in flight per sender"
        var rows = contextRows(machine: machine, server: server, threads: generatorThreads)
        rows.append(("load", "\(setup.clients) clients, \(setup.rooms) rooms of \(membersPerRoom), \(setup.senders) senders, \(pace)"))
        rows.append(("", "\(setup.size)-byte messages\(setup.clientIds ? " with clientId" : ""), \(String(format: "%.0f", setup.duration)) s measured after \(String(format: "%.0f", setup.warmup)) s warm-up"))
        if scenario == "writes" {
            rows.append(("durable acked messages", "\(grouped(ackedPerSecond))/s"))
            rows.append(("ack latency", ackLatency.text))
            rows.append(("deliveries", "\(grouped(deliveriesPerSecond))/s; latency \(latency.text)"))
        } else {
            rows.append(("deliveries", "\(grouped(deliveriesPerSecond))/s (\(grouped(Int((deliveriesPerSecond * measuredSeconds).rounded()))) in \(String(format: "%.1f", measuredSeconds)) s)"))
            rows.append(("latency send→member", latency.text))
            rows.append(("messages acked", "\(grouped(ackedPerSecond))/s; ack latency \(ackLatency.text)"))
        }
        rows.append(("lost / duplicated", "\(lost) / \(duplicates)\(unacked > 0 ? " (\(unacked) received but never acked)" : "")\(drained ? "" : " (not drained: some deliveries still missing at the end)")"))
        rows.append(("sent / acked / failed", "\(grouped(sent)) / \(grouped(acked)) / \(grouped(failed))"))
        rows.append(("errors by code", countsText(errors)))
        if unexpectedCloses > 0 || !closeCodes.isEmpty { rows.append(("closed by the server", "\(unexpectedCloses) (codes: \(countsText(closeCodes)))")) }
        if !connectFailures.isEmpty { rows.append(("connect failures", countsText(connectFailures))) }
        if !joinFailures.isEmpty { rows.append(("join failures", countsText(joinFailures))) }
        if foreignMessages > 0 { rows.append(("other messages", "\(foreignMessages) not sent by this run")) }
        rows += cpu.rows
        if let serverMicrosecondsPerMessage, scenario != "writes" {
            rows.append(("server CPU per message", String(format: "%.1f µs (stored once, delivered to %d)", serverMicrosecondsPerMessage, membersPerRoom)))
        }
        return rows
    }
}

import Foundation
import Histogram
import NIOCore

/// The shape of a messaging run: who is connected, where they are, who sends and how.
/// `fanout` and `writes` are both this, with different defaults.
struct MessagingSetup: Codable, Sendable {
    var clients: Int
    var rooms: Int
    var senders: Int
    /// Total messages a second across senders; 0 sends as fast as acks allow.
    var rate: Double
    /// Messages in flight per sender when `rate` is 0.
    var window: Int
    var maxInFlight: Int
    /// Bytes of content per message.
    var size: Int
    var clientIds: Bool
    /// Seconds measured, after `warmup` seconds of sending that is not measured.
    var duration: Double
    var warmup: Double
    /// Longest wait after sending stops for the last acks and deliveries.
    var drainTimeout: Double

    func validate() throws {
        guard clients > 0, rooms > 0, rooms <= clients else { throw BenchError("need clients > 0 and 0 < rooms <= clients") }
        guard senders >= 0, senders <= clients else { throw BenchError("senders must be 0 to clients") }
        guard rate >= 0, window >= 1, maxInFlight >= 1, size >= 1 else { throw BenchError("rate, window, max-in-flight and size must be positive") }
        guard duration > 0, warmup >= 0 else { throw BenchError("duration must be positive") }
    }

    /// Members of room `room` (clients are dealt round-robin).
    func members(of room: Int) -> Int {
        clients / rooms + (room < clients % rooms ? 1 : 0)
    }

    /// Senders of room `room` (senders are dealt round-robin too, at most one per member).
    func senders(of room: Int) -> Int {
        min(members(of: room), senders / rooms + (room < senders % rooms ? 1 : 0))
    }
}

/// What a messaging run measured.
struct MessagingOutcome: Sendable {
    var setup: MessagingSetup
    var totals: LoopSnapshot
    var lost: Int
    var unacked: Int
    var cpu: CPUSample
    var cpuEnd: CPUSample
    var measuredSeconds: Double
    var connect: ConnectOutcome
    var joinFailures: [String: Int]
    var setupSeconds: Double
    var drainSeconds: Double
    var drained: Bool
}

enum MessagingRun {
    /// Sets up users, rooms and connections, sends for warm-up plus duration, waits for the last
    /// deliveries, and accounts for every message.
    static func run(_ setup: MessagingSetup, in environment: BenchEnvironment, label: String) async throws -> MessagingOutcome {
        try setup.validate()
        let setupStarted = ContinuousClock.now
        let progress = environment.progress
        let accounts = try await environment.accounts(setup.clients)
        let roomIds = try await environment.createRooms(setup.rooms, accounts: accounts)
        var plans: [ClientPlan] = []
        for index in 0..<setup.clients {
            let room = index % setup.rooms
            let rank = index / setup.rooms
            plans.append(ClientPlan(
                index: index, account: accounts[index], roomId: roomIds[room], roomIndex: room, roomCount: setup.rooms,
                audience: setup.members(of: room), roomSenders: setup.senders(of: room), sends: rank < setup.senders(of: room)))
        }
        let connect = try await environment.connectAll(plans)
        progress.note(String(format: "connected %d clients in %.1f s (%.0f/s), %d failed", connect.opened, connect.seconds, Double(connect.opened) / max(connect.seconds, 0.001), connect.failed))
        guard connect.opened > 0 else { throw BenchError("no connection could be opened: \(connect.failures)") }
        let (_, joinFailures) = try await environment.joinAll()
        let setupSeconds = (ContinuousClock.now - setupStarted).seconds

        // Every loop learns the window before the first message goes out.
        let start = uptimeDeadline(after: 0.2)
        let windowStart = start + UInt64(setup.warmup * 1e9)
        let windowEnd = windowStart + UInt64(setup.duration * 1e9)
        try await environment.pool.setWindow(start: windowStart, end: windowEnd)
        let senderCount = plans.filter(\.sends).count
        let perSenderRate = senderCount > 0 ? setup.rate / Double(senderCount) : 0
        let plan = SendPlan(
            rate: perSenderRate, window: setup.window, maxInFlight: setup.maxInFlight, size: setup.size, clientIds: setup.clientIds,
            runTag: environment.runTag, phase: 0)
        _ = try await environment.pool.each { worker in
            for client in worker.clients where client.plan.sends {
                var plan = plan
                plan.phase = Double(client.plan.index % max(senderCount, 1)) / Double(max(senderCount, 1))
                client.startSending(plan, start: start, stop: windowEnd)
            }
        }

        let warmupEnd = instant(ofUptime: windowStart)
        let measureEnd = instant(ofUptime: windowEnd)
        let total = setup.warmup + setup.duration
        let line: (LoopSnapshot, LoopSnapshot, Double, Double?, Double) -> String = { now, previous, seconds, server, generator in
            let elapsed = total - max(0, (measureEnd - ContinuousClock.now).seconds)
            let phase = elapsed < setup.warmup ? String(format: "warm-up %.0f/%.0f s", elapsed, setup.warmup) : String(format: "%.0f/%.0f s", elapsed - setup.warmup, setup.duration)
            let deliveries = Double(now.deliveries - previous.deliveries) / max(seconds, 0.001)
            let acked = Double(now.acked - previous.acked) / max(seconds, 0.001)
            let p99 = now.interval.totalCount > 0 ? format(Double(now.interval.valueAtPercentile(99)) / 1000) : "-"
            let ackP99 = now.intervalAck.totalCount > 0 ? format(Double(now.intervalAck.valueAtPercentile(99)) / 1000) : "-"
            let errors = now.errors.values.reduce(0, +)
            return "\(label) [\(phase)] deliveries \(grouped(deliveries))/s p99 \(p99) ms  acked \(grouped(acked))/s ack p99 \(ackP99) ms  in flight \(now.inFlight)  errors \(errors)  dup \(now.duplicates)  \(cpuText(server, generator))"
        }
        try await environment.monitor(until: warmupEnd, line: line)
        let cpuStart = CPUSample.take(serverPid: environment.serverPid, threads: true)
        try await environment.monitor(until: measureEnd, line: line)
        let cpuEnd = CPUSample.take(serverPid: environment.serverPid, threads: true)
        let measuredSeconds = (cpuEnd.at - cpuStart.at).seconds

        // Drain: every message answered, every acked message delivered to every member.
        let drainStarted = ContinuousClock.now
        var drained = false
        while (ContinuousClock.now - drainStarted).seconds < setup.drainTimeout {
            let snapshot = try await environment.pool.snapshot()
            if snapshot.inFlight <= 0 && snapshot.deliveries >= snapshot.expectedDeliveries {
                drained = true
                break
            }
            progress.update("\(label) draining: in flight \(snapshot.inFlight), deliveries \(snapshot.deliveries)/\(snapshot.expectedDeliveries)")
            try await Task.sleep(for: .milliseconds(50))
        }
        let drainSeconds = (ContinuousClock.now - drainStarted).seconds
        progress.finish()

        // Account for every message: acked sets of every sender, against each member's received sets.
        let ackedSets = try await environment.pool.each { worker in
            worker.clients.filter(\.plan.sends).map { ($0.plan.index, $0.acked) }
        }
        var acked: [Int: BitSet] = [:]
        for part in ackedSets { for (index, set) in part { acked[index] = set } }
        let ackedByIndex = acked
        let losses = try await environment.pool.each { worker in
            worker.clients.reduce((lost: 0, unacked: 0)) { sum, client in
                let loss = client.losses(acked: ackedByIndex)
                return (sum.lost + loss.lost, sum.unacked + loss.unacked)
            }
        }
        let totals = try await environment.pool.snapshot(histograms: true)
        try await environment.pool.closeAll()
        return MessagingOutcome(
            setup: setup, totals: totals, lost: losses.reduce(0) { $0 + $1.lost }, unacked: losses.reduce(0) { $0 + $1.unacked },
            cpu: cpuStart, cpuEnd: cpuEnd, measuredSeconds: measuredSeconds, connect: connect, joinFailures: joinFailures,
            setupSeconds: setupSeconds, drainSeconds: drainSeconds, drained: drained)
    }
}

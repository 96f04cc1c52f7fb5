import Foundation
import Histogram
import NIOCore

/// `recovery`: a rejoin that replays missed messages, and every client coming back after a
/// server restart.
struct RecoverySetup: Codable, Sendable {
    /// Messages missed before each rejoin.
    var replay: Int = 1000
    /// Rejoins measured (each on a new connection).
    var iterations: Int = 20
    /// Users that post the missed messages (over HTTP; more users go faster under a rate limit).
    var writers: Int = 10
    /// Clients connected and joined when the server restarts; 0 skips the restart.
    var clients: Int = 1000
    var rooms: Int = 10
    /// Mean delay between reconnect attempts, with full jitter (0.5x to 1.5x).
    var retryMilliseconds: Int = 100
    /// Longest wait for every client to be back.
    var reconnectTimeout: Double = 60
}

struct RecoveryReport: ScenarioReport {
    var scenario = "recovery"
    var machine: MachineInfo
    var server: ServerDescription
    var generatorThreads: Int
    var configuration: RecoverySetup
    /// Send `join` with `since` to its ack, after every replayed message.
    var rejoin: LatencySummary
    /// Connect, upgrade, then the same rejoin.
    var reconnectAndRejoin: LatencySummary
    var replayedPerJoin: Int
    var truncated: Bool
    /// Rejoins whose replay missed messages, repeated some, or broke `seq` order.
    var badReplays: Int
    var replayCPU: CPUFigures?
    var restart: RestartFigures?
    var restartSkipped: String?

    struct RestartFigures: Codable, Sendable {
        var clients: Int
        var connectedBefore: Int
        /// SIGTERM to exit (the graceful shutdown).
        var stopSeconds: Double
        /// Start to `/healthz` answering.
        var startSeconds: Double
        /// `/healthz` answering to the last client rejoined.
        var reconnectSeconds: Double
        /// SIGTERM to the last client rejoined.
        var totalSeconds: Double
        var rejoined: Int
        /// Each client, from losing its connection to its rejoin's ack.
        var perClient: LatencySummary
        var attempts: Int
        /// Errors answered, and why rejoins failed.
        var errors: [String: Int]
        /// Server CPU from ready to the last rejoin, per client.
        var cpu: CPUFigures?
    }

    var rows: [(String, String)] {
        var rows = contextRows(machine: machine, server: server, threads: generatorThreads)
        rows.append(("rejoin replaying \(replayedPerJoin)", rejoin.text + " (\(rejoin.count) rejoins)"))
        rows.append(("reconnect + rejoin", reconnectAndRejoin.text))
        if truncated { rows.append(("truncated", "yes: the server replays fewer than \(configuration.replay); raise its --replay-cap")) }
        rows.append(("bad replays", "\(badReplays)"))
        if let replayCPU, let perUnit = replayCPU.serverMicrosecondsPerUnit {
            rows.append(("server CPU per replayed message", String(format: "%.2f µs", perUnit)))
        }
        if let restart {
            rows.append(("restart", "\(restart.clients) clients (\(restart.connectedBefore) joined); stop \(String(format: "%.2f", restart.stopSeconds)) s, start \(String(format: "%.2f", restart.startSeconds)) s"))
            rows.append(("full reconnect", String(format: "%d/%d rejoined %.2f s after the server was ready (%.2f s after SIGTERM), %d attempts", restart.rejoined, restart.connectedBefore, restart.reconnectSeconds, restart.totalSeconds, restart.attempts)))
            rows.append(("per client (close → rejoined)", restart.perClient.text))
            if !restart.errors.isEmpty { rows.append(("reconnect errors", countsText(restart.errors))) }
            if let cpu = restart.cpu {
                rows += cpu.rows.map { ("reconnect: " + $0.0, $0.1) }
            }
        } else if let restartSkipped {
            rows.append(("restart", "skipped: \(restartSkipped)"))
        }
        return rows
    }
}

enum RecoveryScenario {
    static func run(_ setup: RecoverySetup, in environment: BenchEnvironment) async throws -> RecoveryReport {
        guard setup.replay >= 0, setup.iterations > 0, setup.writers > 0 else { throw BenchError("replay, iterations and writers must be positive") }
        let progress = environment.progress
        let restartClients = environment.server == nil ? 0 : setup.clients
        let accounts = try await environment.accounts(1 + setup.writers + restartClients)
        let reader = accounts[0]
        let writers = Array(accounts[1...setup.writers])
        let roomId = try await environment.api.createRoom(name: "bench \(environment.runTag) replay", creator: reader, members: writers.map(\.userId))

        // Where the reader left off, then the messages it misses.
        let since = try await environment.api.lastSeq(roomId: roomId, as: reader)
        try await post(setup.replay, to: roomId, writers: writers, environment: environment)

        // Each iteration: a new connection that rejoins with `since`.
        var rejoin = makeLatencyHistogram()
        var total = makeLatencyHistogram()
        var badReplays = 0
        var truncated = false
        var replayed = 0
        let cpuStart = CPUSample.take(serverPid: environment.serverPid, threads: true)
        let worker = environment.pool.workers[0]
        let endpoint = environment.endpoint
        for iteration in 0..<setup.iterations {
            let plan = ClientPlan(index: iteration, account: reader, roomId: roomId)
            let started = MonotonicClock.nanoseconds()
            let outcome = try await worker.flatRun { worker in
                let client = ChatClient(plan: plan, worker: worker)
                return client.connect(to: endpoint).assumeIsolated()
                    .flatMap { _ in client.join(since: since) }
                    .always { _ in client.stop(closing: true) }
                    .nonisolated()
            }
            let elapsed = MonotonicClock.nanoseconds() &- started
            rejoin.recordNanoseconds(outcome.nanoseconds)
            total.recordNanoseconds(elapsed)
            replayed = outcome.replayed
            truncated = truncated || outcome.truncated
            if outcome.replayReceived != outcome.replayed || outcome.outOfOrder > 0 || (!outcome.truncated && outcome.replayed != setup.replay) {
                badReplays += 1
            }
            progress.update("recovery: rejoin \(iteration + 1)/\(setup.iterations) replayed \(outcome.replayed) in \(format(Double(outcome.nanoseconds) / 1e6)) ms")
        }
        let cpuEnd = CPUSample.take(serverPid: environment.serverPid, threads: true)
        progress.finish()

        var restart: RecoveryReport.RestartFigures?
        var skipped: String?
        if environment.server == nil {
            skipped = "the generator restarts only a server it started (--start-server or --server-command)"
        } else if setup.clients == 0 {
            skipped = "--clients 0"
        } else {
            restart = try await restartAndReconnect(setup, accounts: Array(accounts[(1 + setup.writers)...]), environment: environment)
        }
        return RecoveryReport(
            machine: environment.machine, server: environment.serverDescription, generatorThreads: environment.pool.workers.count,
            configuration: setup, rejoin: LatencySummary(rejoin), reconnectAndRejoin: LatencySummary(total), replayedPerJoin: replayed,
            truncated: truncated, badReplays: badReplays,
            replayCPU: CPUFigures(from: cpuStart, to: cpuEnd, unit: "replayed message", units: replayed * setup.iterations),
            restart: restart, restartSkipped: skipped)
    }

    /// Posts `count` messages over HTTP, spread over the writers.
    static func post(_ count: Int, to roomId: String, writers: [Account], environment: BenchEnvironment) async throws {
        let api = environment.api
        let tag = environment.runTag
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                let number = next
                next += 1
                let writer = writers[number % writers.count]
                group.addTask {
                    _ = try await api.postMessage(roomId: roomId, content: "missed message \(number)", clientId: "\(tag)-r-\(number)", as: writer)
                }
            }
            while next < min(count, 32) { add() }
            var done = 0
            while try await group.next() != nil {
                done += 1
                if done % 100 == 0 { environment.progress.update("recovery: posting the missed messages \(done)/\(count)") }
                if next < count { add() }
            }
        }
        environment.progress.note(String(format: "posted %d messages in %.1f s", count, (ContinuousClock.now - started).seconds))
    }

    /// Connects and joins `clients`, restarts the server, and times their return.
    static func restartAndReconnect(_ setup: RecoverySetup, accounts: [Account], environment: BenchEnvironment) async throws -> RecoveryReport.RestartFigures {
        guard let server = environment.server else { throw BenchError("no server to restart") }
        let rooms = max(1, min(setup.rooms, accounts.count))
        let roomIds = try await environment.createRooms(rooms, accounts: accounts)
        let plans = accounts.indices.map { index in
            ClientPlan(
                index: index, account: accounts[index], roomId: roomIds[index % rooms], roomIndex: index % rooms, roomCount: rooms,
                audience: 0, roomSenders: 0, sends: false, reconnects: true)
        }
        let connect = try await environment.connectAll(plans, label: "recovery: connecting")
        let (joined, _) = try await environment.joinAll()
        let delay = TimeAmount.milliseconds(Int64(setup.retryMilliseconds))
        _ = try await environment.pool.each { worker in
            for client in worker.clients { client.setReconnectDelay(delay) }
        }
        environment.progress.note("restarting the server with \(joined) clients joined (\(connect.opened) connected)")

        let stopStarted = ContinuousClock.now
        await server.stop()
        let stopped = ContinuousClock.now
        try await server.start()
        let ready = ContinuousClock.now
        let cpuStart = CPUSample.take(serverPid: environment.serverPid, threads: true)
        let deadline = ready + .seconds(setup.reconnectTimeout)
        var totals = try await environment.pool.snapshot()
        while totals.rejoins < joined && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            totals = try await environment.pool.snapshot()
            environment.progress.update("recovery: \(totals.rejoins)/\(joined) rejoined, \(totals.reconnectAttempts) attempts")
        }
        let cpuEnd = CPUSample.take(serverPid: environment.serverPid, threads: true)
        environment.progress.finish()
        totals = try await environment.pool.snapshot(histograms: true)
        let lastRejoin = totals.lastRejoinAt > 0 ? instant(ofUptime: totals.lastRejoinAt) : ContinuousClock.now
        try await environment.pool.closeAll()
        return RecoveryReport.RestartFigures(
            clients: accounts.count, connectedBefore: joined, stopSeconds: (stopped - stopStarted).seconds,
            startSeconds: (ready - stopped).seconds, reconnectSeconds: max(0, (lastRejoin - ready).seconds),
            totalSeconds: (lastRejoin - stopStarted).seconds, rejoined: totals.rejoins, perClient: LatencySummary(totals.rejoinTimes),
            attempts: totals.reconnectAttempts, errors: totals.errors, cpu: CPUFigures(from: cpuStart, to: cpuEnd, unit: "client", units: totals.rejoins))
    }
}

import Foundation
import Histogram
import NIOCore

/// How connecting a set of clients went.
struct ConnectOutcome: Sendable {
    var opened = 0
    var failures: [String: Int] = [:]
    var seconds: Double = 0
    /// From the connect call to the `101` answer (µs).
    var latency = makeLatencyHistogram()

    var failed: Int { failures.values.reduce(0, +) }
}

/// Steps every scenario takes: users, rooms, connections, joins, the progress line.
extension BenchEnvironment {
    /// `count` users: from the tokens file, else registered.
    func accounts(_ count: Int) async throws -> [Account] {
        try await Accounts.provision(
            count: count, api: api, tokensFile: options.tokensFile, saveTo: options.saveTokens, prefix: userPrefix, progress: progress)
    }

    /// Creates `rooms` rooms filled round-robin with `accounts` (member `i` in room `i % rooms`);
    /// each room's first member creates it. Returns the room ids.
    func createRooms(_ rooms: Int, accounts: [Account], concurrency: Int = 8) async throws -> [String] {
        var ids = [String](repeating: "", count: rooms)
        let api = self.api
        let tag = runTag
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var next = 0
            func add() {
                let room = next
                next += 1
                let members = stride(from: room, to: accounts.count, by: rooms).map { accounts[$0] }
                group.addTask {
                    let id = try await api.createRoom(name: "bench \(tag) \(room)", creator: members[0], members: members.dropFirst().map(\.userId))
                    return (room, id)
                }
            }
            while next < min(rooms, concurrency) { add() }
            while let (room, id) = try await group.next() {
                ids[room] = id
                if next < rooms { add() }
            }
        }
        return ids
    }

    /// Opens one connection per plan, at most `connectConcurrency` upgrades at a time and, with a
    /// `rate`, at most that many new connections a second. Client `i` runs on worker `i % threads`.
    func connectAll(_ plans: [ClientPlan], rate: Double = 0, label: String = "connecting") async throws -> ConnectOutcome {
        let endpoint = self.endpoint
        let pool = self.pool
        let started = ContinuousClock.now
        var outcome = ConnectOutcome()
        let concurrency = max(1, options.connectConcurrency)
        var lastProgress = ContinuousClock.now
        try await withThrowingTaskGroup(of: Result<UInt64, SocketFailure>.self) { group in
            var next = 0
            func add() {
                let plan = plans[next]
                let worker = pool.worker(for: next)
                next += 1
                group.addTask {
                    do {
                        let nanoseconds = try await worker.flatRun { worker in
                            let client = ChatClient(plan: plan, worker: worker)
                            worker.clients.append(client)
                            return client.connect(to: endpoint)
                        }
                        return .success(nanoseconds)
                    } catch let failure as SocketFailure {
                        return .failure(failure)
                    } catch {
                        return .failure(.connect("\(error)"))
                    }
                }
            }
            func pace() async throws {
                guard rate > 0 else { return }
                let due = started + .nanoseconds(Int64(Double(next) / rate * 1e9))
                if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            }
            while next < min(plans.count, concurrency) {
                try await pace()
                add()
            }
            while let result = try await group.next() {
                switch result {
                case .success(let nanoseconds):
                    outcome.opened += 1
                    outcome.latency.recordNanoseconds(nanoseconds)
                case .failure(let failure):
                    outcome.failures[failure.label, default: 0] += 1
                }
                if ContinuousClock.now - lastProgress > .milliseconds(500) {
                    lastProgress = .now
                    let elapsed = (ContinuousClock.now - started).seconds
                    progress.update(String(format: "%@ %d/%d  %.0f/s  failed %d", label, outcome.opened, plans.count, Double(outcome.opened) / max(elapsed, 0.001), outcome.failed))
                }
                if next < plans.count {
                    try await pace()
                    add()
                }
            }
        }
        outcome.seconds = (ContinuousClock.now - started).seconds
        return outcome
    }

    /// Sends `join` on every connected client with a room, and waits for every answer.
    func joinAll() async throws -> (joined: Int, failures: [String: Int]) {
        let started = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in pool.workers {
                group.addTask {
                    try await worker.flatRun { worker in
                        let futures = worker.clients.filter { $0.plan.roomId != nil && $0.socket?.isOpen == true }.map { $0.join() }
                        return EventLoopFuture.whenAllComplete(futures, on: worker.eventLoop).map { results in
                            results.map { result in
                                switch result {
                                case .success: ""
                                case .failure(let error): "\(error)"
                                }
                            }
                        }
                    }
                }
            }
            var all: [String] = []
            for try await part in group { all += part }
            return all
        }
        var failures: [String: Int] = [:]
        for failure in results where !failure.isEmpty { failures[failure, default: 0] += 1 }
        let joined = results.count - failures.values.reduce(0, +)
        progress.note(String(format: "joined %d rooms' subscriptions in %.1f s%@", joined, (ContinuousClock.now - started).seconds, failures.isEmpty ? "" : ", failures: \(failures)"))
        return (joined, failures)
    }

    /// Prints a progress line every second until `deadline`; `line` gets the counters since the
    /// last line, the interval's histograms and the CPU shares.
    func monitor(until deadline: ContinuousClock.Instant, line: (_ now: LoopSnapshot, _ previous: LoopSnapshot, _ seconds: Double, _ server: Double?, _ generator: Double) -> String) async throws {
        var previous = try await pool.snapshot()
        var previousCPU = CPUSample.take(serverPid: serverPid)
        while ContinuousClock.now < deadline {
            let next = min(deadline, ContinuousClock.now + .seconds(1))
            try await Task.sleep(until: next, clock: .continuous)
            let current = try await pool.snapshot()
            let cpu = CPUSample.take(serverPid: serverPid)
            let seconds = (cpu.at - previousCPU.at).seconds
            var serverShare: Double?
            if let start = previousCPU.server, let end = cpu.server, seconds > 0 { serverShare = (end - start).total / seconds }
            let generatorShare = seconds > 0 ? (cpu.generator - previousCPU.generator).total / seconds : 0
            progress.update(line(current, previous, seconds, serverShare, generatorShare))
            previous = current
            previousCPU = cpu
        }
    }
}

/// `server 85%  gen 40%`.
func cpuText(_ server: Double?, _ generator: Double) -> String {
    let serverText = server.map { String(format: "%.0f%%", $0 * 100) } ?? "?"
    return "server \(serverText)  gen \(String(format: "%.0f%%", generator * 100))"
}

/// A monotonic deadline in NIO's clock, `seconds` from now.
func uptimeDeadline(after seconds: Double) -> UInt64 {
    MonotonicClock.nanoseconds() + UInt64(max(0, seconds) * 1e9)
}

/// The `ContinuousClock` instant of a monotonic-nanoseconds time (both count from boot on Linux).
func instant(ofUptime nanoseconds: UInt64) -> ContinuousClock.Instant {
    let now = MonotonicClock.nanoseconds()
    let nowInstant = ContinuousClock.now
    if nanoseconds >= now { return nowInstant + .nanoseconds(Int64(nanoseconds - now)) }
    return nowInstant - .nanoseconds(Int64(now - nanoseconds))
}

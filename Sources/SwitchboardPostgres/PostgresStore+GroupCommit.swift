import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

/// One `append` call waiting for its group commit.
struct PendingAppend: Sendable {
    let messages: [NewMessage]
    let completion: @Sendable (Result<[AppendResult], any Error>) -> Void
}

/// The appends waiting to be stored, and the group commits in flight: what the single drain task
/// does next. Pure state, so that its rules are tested without a database.
///
/// Several group commits may be in flight at once, each on a connection of its own, but they start
/// one after another: the drain task starts the next only once the previous one holds its rooms'
/// locks (see ``PostgresStore``), and each answers its callers only after the previous one has.
struct AppendQueue {
    /// What the drain task does next.
    enum Step {
        /// Store these calls in one transaction.
        case commit([PendingAppend])
        /// Nothing to start now (no calls, or as many commits in flight as allowed): park until a
        /// call arrives or a commit ends.
        case wait
        /// Idle: nothing queued, nothing in flight. The drain task ends; these waiters of `close`
        /// are to be resumed.
        case stop([CheckedContinuation<Void, Never>])
    }

    /// What `submit` asks the caller to do.
    enum SubmitAction {
        /// The store is closed: fail the call.
        case refuse
        /// Start the drain task.
        case startDrain
        /// Resume the parked drain task.
        case wake(CheckedContinuation<Void, Never>)
        /// Nothing: the drain task will see the call.
        case none
    }

    /// The most messages of one group commit; one call is never split.
    let maxBatchSize: Int
    /// The most group commits in flight at once.
    let maxConcurrentCommits: Int

    private(set) var pending: [PendingAppend] = []
    private(set) var commitsInFlight = 0
    private(set) var isDraining = false
    private(set) var isClosed = false
    private var parkedDrain: CheckedContinuation<Void, Never>?
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []

    init(maxBatchSize: Int, maxConcurrentCommits: Int) {
        self.maxBatchSize = max(maxBatchSize, 1)
        self.maxConcurrentCommits = max(maxConcurrentCommits, 1)
    }

    mutating func submit(_ call: PendingAppend) -> SubmitAction {
        guard !isClosed else { return .refuse }
        pending.append(call)
        guard isDraining else {
            isDraining = true
            return .startDrain
        }
        return takeParkedDrainIfItHasAStep().map(SubmitAction.wake) ?? .none
    }

    /// The drain task's next step: calls worth up to `maxBatchSize` messages (at least one call,
    /// however big) when a commit may start.
    mutating func nextStep() -> Step {
        if pending.isEmpty {
            guard commitsInFlight == 0 else { return .wait }
            isDraining = false
            defer { closeWaiters = [] }
            return .stop(closeWaiters)
        }
        guard commitsInFlight < maxConcurrentCommits else { return .wait }
        var messageCount = 0
        var takenCount = 0
        for call in pending {
            if takenCount > 0 && messageCount + call.messages.count > maxBatchSize { break }
            messageCount += call.messages.count
            takenCount += 1
        }
        defer { pending.removeFirst(takenCount) }
        commitsInFlight += 1
        return .commit(Array(pending.prefix(takenCount)))
    }

    /// Parks the drain task after `.wait`; returns `continuation` to be resumed at once when a step
    /// has become possible since.
    mutating func park(_ continuation: CheckedContinuation<Void, Never>) -> CheckedContinuation<Void, Never>? {
        parkedDrain = continuation
        return takeParkedDrainIfItHasAStep()
    }

    /// A commit has answered its callers; returns the parked drain task to resume, if any.
    mutating func commitEnded() -> CheckedContinuation<Void, Never>? {
        commitsInFlight -= 1
        return takeParkedDrainIfItHasAStep()
    }

    /// Refuses later calls; true the first time.
    mutating func close() -> Bool {
        defer { isClosed = true }
        return !isClosed
    }

    /// Registers a waiter of `close`; false when the queue is already drained (resume it at once).
    mutating func waitUntilDrained(_ continuation: CheckedContinuation<Void, Never>) -> Bool {
        guard isDraining else { return false }
        closeWaiters.append(continuation)
        return true
    }

    private var hasStep: Bool {
        pending.isEmpty ? commitsInFlight == 0 : commitsInFlight < maxConcurrentCommits
    }

    private mutating func takeParkedDrainIfItHasAStep() -> CheckedContinuation<Void, Never>? {
        guard hasStep, let parked = parkedDrain else { return nil }
        parkedDrain = nil
        return parked
    }
}

extension PostgresStore {
    /// Queues messages; see ``ChatStore/submitAppend(_:completion:)``. Fails with `.notFound` when
    /// one of the rooms does not exist, and then stores none of this call's messages.
    public func submitAppend(_ messages: [NewMessage], completion: @escaping @Sendable (Result<[AppendResult], any Error>) -> Void) {
        guard !messages.isEmpty else { return completion(.success([])) }
        switch appendQueue.withLock({ $0.submit(PendingAppend(messages: messages, completion: completion)) }) {
        case .refuse: completion(.failure(Self.closedError))
        case .startDrain: Task { await self.drainAppends() }
        case .wake(let drain): drain.resume()
        case .none: break
        }
    }

    /// Returns once the drain task has emptied the queue and every commit has answered; the queue
    /// must already refuse new calls.
    func waitUntilAppendsDrained() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if !appendQueue.withLock({ $0.waitUntilDrained(continuation) }) { continuation.resume() }
        }
    }

    /// The drain task: starts a group commit with whatever arrived meanwhile as soon as the previous
    /// one holds its locks and a slot is free.
    private func drainAppends() async {
        var previous: Task<Void, Never>?
        while true {
            switch appendQueue.withLock({ $0.nextStep() }) {
            case .commit(let batch):
                previous = await startCommit(batch, after: previous)
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    appendQueue.withLock { $0.park(continuation) }?.resume()
                }
            case .stop(let closeWaiters):
                for waiter in closeWaiters { waiter.resume() }
                return
            }
        }
    }

    /// Starts storing a batch on a connection of its own and returns once its rooms are locked (or
    /// it failed), so that the next batch numbers after it in every room they share. The task
    /// returned ends once the batch's callers are answered, which it does only after `previous`'s:
    /// callers are answered in the order of their calls, so that publishing keeps each room in
    /// `seq` order.
    private func startCommit(_ batch: [PendingAppend], after previous: Task<Void, Never>?) async -> Task<Void, Never> {
        let (locked, lockedContinuation) = AsyncStream<Void>.makeStream()
        let task = Task {
            let outcome = await commit(batch) { lockedContinuation.finish() }
            lockedContinuation.finish()
            await previous?.value
            switch outcome {
            case .success(let plan):
                for (pending, result) in zip(batch, plan.results) { pending.completion(result.mapError { $0 as any Error }) }
            case .failure(let failure):
                for pending in batch { pending.completion(.failure(failure)) }
            }
            appendQueue.withLock { $0.commitEnded() }?.resume()
        }
        for await _ in locked {}
        return task
    }

    /// Stores a batch in one transaction; nothing is answered here.
    private func commit(_ batch: [PendingAppend], onLocked: @escaping @Sendable () -> Void) async -> Result<AppendPlan, StoreError> {
        do {
            let plan = try await client.withConnection { connection in
                try await Self.transaction(on: connection, logger: logger) { connection in
                    try await storeBatch(batch.map(\.messages), on: connection, onLocked: onLocked)
                }
            }
            committedBatches.add(1, ordering: .relaxed)
            return .success(plan)
        } catch {
            let failure = storeError(error)
            logger.error(
                "group commit failed",
                metadata: ["switchboard.messages": "\(batch.reduce(0) { $0 + $1.messages.count })", "error": "\(failure)"])
            return .failure(failure)
        }
    }

    /// The statements of one group commit, three whatever the batch size: the rooms' rows are locked
    /// (in id order, so that two transactions never deadlock), which serialises the numbering of
    /// each room across connections and processes; then the batch's clientIds are looked up (a
    /// statement of its own, so that it sees what a transaction it waited for committed); then one
    /// statement writes the messages, the rooms' newest `seq` and the senders' read markers.
    private func storeBatch(_ calls: [[NewMessage]], on connection: PostgresConnection, onLocked: () -> Void) async throws -> AppendPlan {
        let roomIds = Array(Set(calls.flatMap { $0.map(\.roomId) })).sorted()
        var lastSeqs: [String: Int] = [:]
        for try await (id, lastSeq) in try await connection.execute(LockRooms(roomIds: roomIds), logger: logger) {
            lastSeqs[id] = lastSeq
        }
        onLocked()
        let keys = Array(AppendPlanner.clientKeys(of: calls, existingRooms: Set(lastSeqs.keys)))
        var stored: [ClientKey: Message] = [:]
        if !keys.isEmpty {
            for try await message in try await connection.execute(FindRepeats(keys: keys), logger: logger) {
                if let key = message.clientKey { stored[key] = message }
            }
        }
        let plan = AppendPlanner.plan(calls, lastSeqs: lastSeqs, stored: stored)
        if !plan.newMessages.isEmpty || !plan.readMarkers.isEmpty {
            _ = try await connection.execute(WritePlan(plan: plan), logger: logger)
        }
        return plan
    }
}

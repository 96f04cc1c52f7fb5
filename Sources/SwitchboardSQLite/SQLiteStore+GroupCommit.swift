import SQLiteNIO
import Synchronization
import SwitchboardProtocol
import SwitchboardStore

/// One `append` call waiting for its group commit.
struct PendingAppend: Sendable {
    let messages: [NewMessage]
    let completion: @Sendable (Result<[AppendResult], any Error>) -> Void
}

/// Any other write waiting for the writer connection.
struct PendingOperation: Sendable {
    /// Runs the write's statements inside a transaction shared with the other writes of its turn.
    /// Returns whether they succeeded (if not, they are rolled back alone) and how to answer the
    /// caller once that transaction has committed or failed.
    let run: @Sendable (SQLiteConnection) async -> (succeeded: Bool, answer: @Sendable (Result<Void, any Error>) -> Void)
    /// Answers the caller when the write could not run at all.
    let fail: @Sendable (any Error) -> Void
}

/// The writes waiting for the writer connection. A single drain task empties it, so writes never
/// interleave and the cached `seq`s stay right.
struct WriteQueue {
    enum Job: Sendable {
        case append(PendingAppend)
        case operation(PendingOperation)
    }

    enum Turn: Sendable {
        case work(appends: [PendingAppend], operations: [PendingOperation])
        case idle(closeWaiters: [CheckedContinuation<Void, Never>])
    }

    var appends: [PendingAppend] = []
    var operations: [PendingOperation] = []
    var isDraining = false
    var isClosed = false
    var closeWaiters: [CheckedContinuation<Void, Never>] = []

    /// The next work for the drain task: appends worth up to `maxBatchSize` messages (at least one
    /// call, however big), plus every other write waiting, so that those never starve behind a
    /// stream of messages. Reordering writes that are all still pending is safe: none of their
    /// callers has been answered, so any order is one they could have observed.
    mutating func nextTurn(maxBatchSize: Int) -> Turn {
        if appends.isEmpty && operations.isEmpty {
            isDraining = false
            defer { closeWaiters = [] }
            return .idle(closeWaiters: closeWaiters)
        }
        var messageCount = 0
        var takenCount = 0
        for pending in appends {
            if takenCount > 0 && messageCount + pending.messages.count > maxBatchSize { break }
            messageCount += pending.messages.count
            takenCount += 1
        }
        let batch = Array(appends.prefix(takenCount))
        appends.removeFirst(takenCount)
        defer { operations = [] }
        return .work(appends: batch, operations: operations)
    }
}

/// What a batch stored, to be published only once it is committed.
private struct BatchOutcome {
    var results: [Result<[AppendResult], any Error>]
    var lastSeqs: [String: Int]
}

extension SQLiteStore {
    /// Queues messages; see ``ChatStore/submitAppend(_:completion:)``. Fails with `.notFound` when
    /// one of the rooms does not exist, and then stores none of this call's messages.
    public func submitAppend(_ messages: [NewMessage], completion: @escaping @Sendable (Result<[AppendResult], any Error>) -> Void) {
        guard !messages.isEmpty else { return completion(.success([])) }
        if !submit(.append(PendingAppend(messages: messages, completion: completion))) {
            completion(.failure(Self.closedError))
        }
    }

    /// Queues a write, starting the drain task when none runs. False once the store is closed.
    func submit(_ job: WriteQueue.Job) -> Bool {
        let (accepted, startsDrain) = writeQueue.withLock { queue in
            guard !queue.isClosed else { return (false, false) }
            switch job {
            case .append(let pending): queue.appends.append(pending)
            case .operation(let pending): queue.operations.append(pending)
            }
            defer { queue.isDraining = true }
            return (true, !queue.isDraining)
        }
        if startsDrain {
            Task { await self.drainWriteQueue() }
        }
        return accepted
    }

    /// Returns once the drain task has emptied the queue; the queue must already refuse new writes.
    func waitUntilWritesDrained() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isDrained = writeQueue.withLock { queue in
                guard queue.isDraining else { return true }
                queue.closeWaiters.append(continuation)
                return false
            }
            if isDrained { continuation.resume() }
        }
    }

    /// The writer's loop: while writes wait, commit them. Each batch collects whatever arrived
    /// during the previous commit's fsync, which is what makes group commit pay off.
    private func drainWriteQueue() async {
        while true {
            switch writeQueue.withLock({ $0.nextTurn(maxBatchSize: configuration.maxBatchSize) }) {
            case .idle(let closeWaiters):
                for waiter in closeWaiters { waiter.resume() }
                return
            case .work(let appends, let operations):
                if !appends.isEmpty { await commitBatch(appends) }
                if !operations.isEmpty { await commitOperations(operations) }
            }
        }
    }

    /// Runs the other writes of a turn in one transaction, each in a savepoint of its own so that
    /// a failing one is rolled back alone, and answers them after COMMIT: one fsync for all, so
    /// that, say, 1,000 clients rejoining after a restart (each moving its read marker) do not
    /// wait for 1,000 commits one after another.
    private func commitOperations(_ operations: [PendingOperation]) async {
        var answers: [@Sendable (Result<Void, any Error>) -> Void] = []
        do {
            _ = try await writer.query("BEGIN IMMEDIATE")
            do {
                for operation in operations {
                    _ = try await writer.query("SAVEPOINT operation")
                    let (succeeded, answer) = await operation.run(writer)
                    if !succeeded { _ = try await writer.query("ROLLBACK TO operation") }
                    _ = try await writer.query("RELEASE operation")
                    answers.append(answer)
                }
                _ = try await writer.query("COMMIT")
            } catch {
                _ = try? await writer.query("ROLLBACK")
                throw error
            }
            for answer in answers { answer(.success(())) }
        } catch {
            let failure = Self.storeError(error)
            for answer in answers { answer(.failure(failure)) }
            // Those not reached were never run: they fail the same way.
            for operation in operations.dropFirst(answers.count) { operation.fail(failure) }
        }
    }

    /// Stores a batch in one transaction and answers its callers only after COMMIT.
    private func commitBatch(_ batch: [PendingAppend]) async {
        do {
            let calls = batch.map(\.messages)
            // The whole batch is one job on the writer's thread: no hop between its statements.
            let outcome = try await writerThreadPool.runIfActive {
                try self.batchWriter.transaction { try self.storeBatch(calls, on: self.batchWriter) }
            }
            lastSeqCache.withLock { cache in cache.merge(outcome.lastSeqs) { _, committed in committed } }
            committedBatches.add(1, ordering: .relaxed)
            // Still on the single writer task: the callers' completions run in commit order.
            for (pending, result) in zip(batch, outcome.results) {
                pending.completion(result)
            }
        } catch {
            // Another process may have written to these rooms; reload their seqs next time.
            let roomIds = Set(batch.flatMap { $0.messages.map(\.roomId) })
            lastSeqCache.withLock { cache in
                for roomId in roomIds { cache[roomId] = nil }
            }
            let failure = Self.storeError(error)
            logger.error("group commit failed", metadata: ["messages": "\(batch.reduce(0) { $0 + $1.messages.count })", "error": "\(failure)"])
            for pending in batch { pending.completion(.failure(failure)) }
        }
    }

    /// The statements of one group commit, one row each: each is prepared once and kept, and a
    /// statement that changes one row needs no statement journal (a multi-row one would copy every
    /// page it changes, so that it alone could be undone; here a failure undoes the whole batch).
    private func storeBatch(_ calls: [[NewMessage]], on connection: DirectConnection) throws -> BatchOutcome {
        let lastSeqs = try loadLastSeqs(of: Set(calls.flatMap { $0.map(\.roomId) }), on: connection)
        let clientKeys = AppendPlanner.clientKeys(of: calls, existingRooms: Set(lastSeqs.keys))
        let plan = AppendPlanner.plan(calls, lastSeqs: lastSeqs, stored: try storedMessages(clientKeys: clientKeys, on: connection))
        try insert(plan.newMessages, on: connection)
        try connection.withStatement("UPDATE rooms SET last_seq = ?1 WHERE id = ?2") { statement in
            for roomId in plan.changedRooms {
                try statement.bind(1, plan.lastSeqs[roomId] ?? 0)
                try statement.bind(2, roomId)
                try statement.run()
            }
        }
        // Sending a message means having read the room up to it.
        try connection.withStatement("UPDATE members SET read_seq = max(read_seq, ?3) WHERE room_id = ?1 AND user_id = ?2") { statement in
            for marker in plan.readMarkers {
                try statement.bind(1, marker.roomId)
                try statement.bind(2, marker.userId)
                try statement.bind(3, marker.seq)
                try statement.run()
            }
        }
        return BatchOutcome(results: plan.results.map { $0.mapError { $0 as any Error } }, lastSeqs: plan.lastSeqs)
    }

    /// The newest `seq` of each existing room among `roomIds`: from the cache, else from the
    /// database. Unknown rooms are absent from the answer.
    private func loadLastSeqs(of roomIds: Set<String>, on connection: DirectConnection) throws -> [String: Int] {
        var lastSeqs: [String: Int] = [:]
        let uncached: [String] = lastSeqCache.withLock { cache in
            roomIds.filter { roomId in
                guard let lastSeq = cache[roomId] else { return true }
                lastSeqs[roomId] = lastSeq
                return false
            }
        }
        guard !uncached.isEmpty else { return lastSeqs }
        try connection.withStatement("SELECT last_seq FROM rooms WHERE id = ?1") { statement in
            for roomId in uncached {
                try statement.bind(1, roomId)
                if try statement.step() { lastSeqs[roomId] = statement.integer(0) }
                while try statement.step() {}
            }
        }
        return lastSeqs
    }

    /// The stored messages with these idempotency keys, each found by the `client_id` index.
    private func storedMessages(clientKeys: Set<ClientKey>, on connection: DirectConnection) throws -> [ClientKey: Message] {
        guard !clientKeys.isEmpty else { return [:] }
        var stored: [ClientKey: Message] = [:]
        try connection.withStatement(
            """
            SELECT \(Columns.message("messages")) FROM messages
            WHERE client_id = ?1 AND room_id = ?2 AND user_id = ?3 AND client_id IS NOT NULL
            """
        ) { statement in
            // Read by position, in the order of `Columns.message`.
            for key in clientKeys {
                try statement.bind(1, key.clientId)
                try statement.bind(2, key.roomId)
                try statement.bind(3, key.userId)
                while try statement.step() {
                    let reactions = statement.text(11)
                    stored[key] = Message(
                        id: statement.text(0), roomId: statement.text(1), seq: statement.integer(2), userId: statement.text(3),
                        content: statement.text(4), createdAt: statement.integer(5), clientId: statement.optionalText(6),
                        replyTo: statement.optionalText(7), meta: try statement.optionalText(8).map { try Wire.decode(JSONValue.self, from: $0) },
                        editedAt: statement.optionalInteger(9), deleted: statement.integer(10) != 0,
                        reactions: reactions == "{}" ? [:] : try Wire.decode([String: Int].self, from: reactions))
                }
            }
        }
        return stored
    }

    private func insert(_ messages: [Message], on connection: DirectConnection) throws {
        guard !messages.isEmpty else { return }
        try connection.withStatement(
            """
            INSERT INTO messages (room_id, seq, id, user_id, content, created_at, client_id, reply_to, meta)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
            """
        ) { statement in
            for message in messages {
                try statement.bind(1, message.roomId)
                try statement.bind(2, message.seq)
                try statement.bind(3, message.id)
                try statement.bind(4, message.userId)
                try statement.bind(5, message.content)
                try statement.bind(6, message.createdAt)
                try statement.bind(7, message.clientId)
                try statement.bind(8, message.replyTo)
                try statement.bind(9, try message.meta.map { try Wire.encodeString($0) })
                try statement.run()
            }
        }
    }
}

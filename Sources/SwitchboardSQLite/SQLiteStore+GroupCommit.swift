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
            let outcome = try await Self.transaction(on: writer) { connection in
                try await storeBatch(batch, on: connection)
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

    /// The statements of one group commit: a fixed handful whatever the batch size, because each
    /// statement costs a thread hop and a prepare. What to write is the planner's to say.
    private func storeBatch(_ batch: [PendingAppend], on connection: SQLiteConnection) async throws -> BatchOutcome {
        let calls = batch.map(\.messages)
        let lastSeqs = try await loadLastSeqs(of: Set(calls.flatMap { $0.map(\.roomId) }), on: connection)
        let clientKeys = AppendPlanner.clientKeys(of: calls, existingRooms: Set(lastSeqs.keys))
        let plan = AppendPlanner.plan(calls, lastSeqs: lastSeqs, stored: try await storedMessages(clientKeys: clientKeys, on: connection))
        try await insert(plan.newMessages, on: connection)
        try await saveLastSeqs(of: plan.changedRooms, lastSeqs: plan.lastSeqs, on: connection)
        try await moveReadMarkers(plan.readMarkers, on: connection)
        return BatchOutcome(results: plan.results.map { $0.mapError { $0 as any Error } }, lastSeqs: plan.lastSeqs)
    }

    /// The newest `seq` of each existing room among `roomIds`: from the cache, else from the
    /// database in one query. Unknown rooms are absent from the answer.
    private func loadLastSeqs(of roomIds: Set<String>, on connection: SQLiteConnection) async throws -> [String: Int] {
        var lastSeqs: [String: Int] = [:]
        let uncached: [String] = lastSeqCache.withLock { cache in
            roomIds.filter { roomId in
                guard let lastSeq = cache[roomId] else { return true }
                lastSeqs[roomId] = lastSeq
                return false
            }
        }
        for chunk in uncached.chunks(ofCount: SQL.maxVariables) {
            let rows = try await connection.query(
                "SELECT id, last_seq FROM rooms WHERE id IN (\(SQL.list(chunk.count)))", chunk.map { .text($0) })
            for row in rows { lastSeqs[try row.text("id")] = try row.integer("last_seq") }
        }
        return lastSeqs
    }

    /// The stored messages with these idempotency keys. Matched on the whole key, so that clients
    /// whose ids repeat across users and rooms (say, counters) do not make the lookup read them all.
    private func storedMessages(clientKeys: Set<ClientKey>, on connection: SQLiteConnection) async throws -> [ClientKey: Message] {
        var stored: [ClientKey: Message] = [:]
        for chunk in Array(clientKeys).chunks(ofCount: SQL.maxVariables / 3) {
            let rows = try await connection.query(
                """
                SELECT \(Columns.message("m")) FROM (VALUES \(SQL.rows(chunk.count, columns: 3))) AS wanted
                JOIN messages m ON m.client_id = wanted.column1 AND m.room_id = wanted.column2 AND m.user_id = wanted.column3
                WHERE m.client_id IS NOT NULL
                """, chunk.flatMap { key in [.text(key.clientId), .text(key.roomId), .text(key.userId)] })
            for row in rows {
                let message = try Decode.message(row)
                if let clientKey = message.clientKey { stored[clientKey] = message }
            }
        }
        return stored
    }

    private func insert(_ messages: [Message], on connection: SQLiteConnection) async throws {
        let columnCount = 9
        for chunk in messages.chunks(ofCount: SQL.maxVariables / columnCount) {
            var binds: [SQLiteData] = []
            binds.reserveCapacity(chunk.count * columnCount)
            for message in chunk {
                binds += [
                    .text(message.roomId), .integer(message.seq), .text(message.id), .text(message.userId),
                    .text(message.content), .integer(message.createdAt), .optionalText(message.clientId),
                    .optionalText(message.replyTo), .optionalText(try message.meta.map { try Wire.encodeString($0) }),
                ]
            }
            _ = try await connection.query(
                """
                INSERT INTO messages (room_id, seq, id, user_id, content, created_at, client_id, reply_to, meta)
                VALUES \(SQL.rows(chunk.count, columns: columnCount))
                """, binds)
        }
    }

    private func saveLastSeqs(of roomIds: Set<String>, lastSeqs: [String: Int], on connection: SQLiteConnection) async throws {
        for chunk in Array(roomIds).chunks(ofCount: SQL.maxVariables / 2) {
            _ = try await connection.query(
                """
                UPDATE rooms SET last_seq = changed.column2
                FROM (VALUES \(SQL.rows(chunk.count, columns: 2))) AS changed
                WHERE rooms.id = changed.column1
                """, chunk.flatMap { roomId in [.text(roomId), .integer(lastSeqs[roomId] ?? 0)] })
        }
    }

    /// Sending a message means having read the room up to it.
    private func moveReadMarkers(_ markers: [ReadMarker], on connection: SQLiteConnection) async throws {
        for chunk in markers.chunks(ofCount: SQL.maxVariables / 3) {
            _ = try await connection.query(
                """
                UPDATE members SET read_seq = max(read_seq, sent.column3)
                FROM (VALUES \(SQL.rows(chunk.count, columns: 3))) AS sent
                WHERE members.room_id = sent.column1 AND members.user_id = sent.column2
                """, chunk.flatMap { marker in [.text(marker.roomId), .text(marker.userId), .integer(marker.seq)] })
        }
    }
}

import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

/// One `append` call waiting for its group commit.
struct PendingAppend: Sendable {
    let messages: [NewMessage]
    let completion: @Sendable (Result<[AppendResult], any Error>) -> Void
}

/// The appends waiting for the writer task. A single drain task empties it, so that calls are
/// stored, and answered, in the order they were made.
struct AppendQueue {
    var pending: [PendingAppend] = []
    var isDraining = false
    var isClosed = false
    var closeWaiters: [CheckedContinuation<Void, Never>] = []

    /// Calls worth up to `maxBatchSize` messages (at least one call, however big); empty when idle,
    /// in which case the drain task stops and the close waiters are to be resumed.
    mutating func nextBatch(maxBatchSize: Int) -> (batch: [PendingAppend], closeWaiters: [CheckedContinuation<Void, Never>]) {
        guard !pending.isEmpty else {
            isDraining = false
            defer { closeWaiters = [] }
            return ([], closeWaiters)
        }
        var messageCount = 0
        var takenCount = 0
        for call in pending {
            if takenCount > 0 && messageCount + call.messages.count > maxBatchSize { break }
            messageCount += call.messages.count
            takenCount += 1
        }
        defer { pending.removeFirst(takenCount) }
        return (Array(pending.prefix(takenCount)), [])
    }
}

extension PostgresStore {
    /// Queues messages; see ``ChatStore/submitAppend(_:completion:)``. Fails with `.notFound` when
    /// one of the rooms does not exist, and then stores none of this call's messages.
    public func submitAppend(_ messages: [NewMessage], completion: @escaping @Sendable (Result<[AppendResult], any Error>) -> Void) {
        guard !messages.isEmpty else { return completion(.success([])) }
        let (accepted, startsDrain) = appendQueue.withLock { queue in
            guard !queue.isClosed else { return (false, false) }
            queue.pending.append(PendingAppend(messages: messages, completion: completion))
            defer { queue.isDraining = true }
            return (true, !queue.isDraining)
        }
        guard accepted else { return completion(.failure(Self.closedError)) }
        if startsDrain {
            Task { await self.drainAppends() }
        }
    }

    /// Returns once the drain task has emptied the queue; the queue must already refuse new calls.
    func waitUntilAppendsDrained() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isDrained = appendQueue.withLock { queue in
                guard queue.isDraining else { return true }
                queue.closeWaiters.append(continuation)
                return false
            }
            if isDrained { continuation.resume() }
        }
    }

    /// The writer's loop: each batch collects whatever arrived during the previous commit.
    private func drainAppends() async {
        while true {
            let (batch, closeWaiters) = appendQueue.withLock { $0.nextBatch(maxBatchSize: max(configuration.maxBatchSize, 1)) }
            if batch.isEmpty {
                for waiter in closeWaiters { waiter.resume() }
                return
            }
            await commitBatch(batch)
        }
    }

    /// Stores a batch in one transaction and answers its callers, in order, only after COMMIT.
    private func commitBatch(_ batch: [PendingAppend]) async {
        do {
            let plan = try await client.withConnection { connection in
                try await Self.transaction(on: connection, logger: logger) { connection in
                    try await storeBatch(batch.map(\.messages), on: connection)
                }
            }
            committedBatches.add(1, ordering: .relaxed)
            for (pending, result) in zip(batch, plan.results) {
                pending.completion(result.mapError { $0 as any Error })
            }
        } catch {
            let failure = storeError(error)
            logger.error(
                "group commit failed",
                metadata: ["switchboard.messages": "\(batch.reduce(0) { $0 + $1.messages.count })", "error": "\(failure)"])
            for pending in batch { pending.completion(.failure(failure)) }
        }
    }

    /// The statements of one group commit: a fixed handful whatever the batch size. The rooms'
    /// rows are locked first (in id order, so that two servers never deadlock), which serialises
    /// the numbering of each room across every process on the database.
    private func storeBatch(_ calls: [[NewMessage]], on connection: PostgresConnection) async throws -> AppendPlan {
        let roomIds = Array(Set(calls.flatMap { $0.map(\.roomId) })).sorted()
        var lastSeqs: [String: Int] = [:]
        for row in try await connection.rows(
            "SELECT id, last_seq FROM rooms WHERE id = ANY(\(roomIds)) ORDER BY id FOR UPDATE", logger: logger)
        {
            lastSeqs[try row["id"].decode(String.self)] = try row["last_seq"].decode(Int.self)
        }
        let keys = Array(AppendPlanner.clientKeys(of: calls, existingRooms: Set(lastSeqs.keys)))
        var stored: [ClientKey: Message] = [:]
        if !keys.isEmpty {
            let rows = try await connection.rows(
                """
                SELECT \(unescaped: Columns.message("m"))
                FROM unnest(\(keys.map(\.clientId))::text[], \(keys.map(\.roomId))::text[], \(keys.map(\.userId))::text[])
                    AS wanted(client_id, room_id, user_id)
                JOIN messages m ON m.client_id = wanted.client_id AND m.room_id = wanted.room_id AND m.user_id = wanted.user_id
                """, logger: logger)
            for row in rows {
                let message = try Decode.message(row)
                if let key = message.clientKey { stored[key] = message }
            }
        }
        let plan = AppendPlanner.plan(calls, lastSeqs: lastSeqs, stored: stored)
        try await insert(plan.newMessages, on: connection)
        let changed = Array(plan.changedRooms)
        if !changed.isEmpty {
            try await connection.query(
                """
                UPDATE rooms SET last_seq = changed.last_seq
                FROM unnest(\(changed)::text[], \(changed.map { plan.lastSeqs[$0] ?? 0 })::bigint[]) AS changed(id, last_seq)
                WHERE rooms.id = changed.id
                """, logger: logger)
        }
        if !plan.readMarkers.isEmpty {
            let markers = plan.readMarkers
            try await connection.query(
                """
                UPDATE members SET read_seq = greatest(members.read_seq, sent.seq)
                FROM unnest(\(markers.map(\.roomId))::text[], \(markers.map(\.userId))::text[], \(markers.map(\.seq))::bigint[])
                    AS sent(room_id, user_id, seq)
                WHERE members.room_id = sent.room_id AND members.user_id = sent.user_id
                """, logger: logger)
        }
        return plan
    }

    /// Multi-row INSERTs, as many rows per statement as the bind limit allows.
    private func insert(_ messages: [Message], on connection: PostgresConnection) async throws {
        let columnCount = 9
        for chunk in messages.chunks(ofCount: maxBinds / columnCount) {
            var binds = PostgresBindings(capacity: chunk.count * columnCount)
            var rows: [String] = []
            rows.reserveCapacity(chunk.count)
            for (index, message) in chunk.enumerated() {
                let first = index * columnCount
                rows.append("(" + (1...columnCount).map { "$\(first + $0)" }.joined(separator: ", ") + ")")
                binds.append(message.roomId)
                binds.append(message.seq)
                binds.append(message.id)
                binds.append(message.userId)
                binds.append(message.content)
                binds.append(message.createdAt)
                binds.append(message.clientId)
                binds.append(message.replyTo)
                binds.append(try message.meta.map { try Wire.encodeString($0) })
            }
            try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        INSERT INTO messages (room_id, seq, id, user_id, content, created_at, client_id, reply_to, meta)
                        VALUES \(rows.joined(separator: ", "))
                        """, binds: binds), logger: logger)
        }
    }
}

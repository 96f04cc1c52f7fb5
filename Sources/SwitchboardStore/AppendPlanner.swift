import SwitchboardProtocol

/// A message's idempotency key: the same `clientId` from the same user in the same room.
public struct ClientKey: Sendable, Hashable {
    public var roomId: String
    public var userId: String
    public var clientId: String
    public init(roomId: String, userId: String, clientId: String) {
        self.roomId = roomId
        self.userId = userId
        self.clientId = clientId
    }
}

extension NewMessage {
    /// The idempotency key, when the message has a `clientId`.
    public var clientKey: ClientKey? {
        clientId.map { ClientKey(roomId: roomId, userId: userId, clientId: $0) }
    }
}

extension Message {
    /// The idempotency key, when the message has a `clientId`.
    public var clientKey: ClientKey? {
        clientId.map { ClientKey(roomId: roomId, userId: userId, clientId: $0) }
    }
}

/// A member's read marker to move up to `seq` (never down).
public struct ReadMarker: Sendable, Hashable {
    public var roomId: String
    public var userId: String
    public var seq: Int
    public init(roomId: String, userId: String, seq: Int) {
        self.roomId = roomId
        self.userId = userId
        self.seq = seq
    }
}

/// What one group commit must write, and what to answer each call once it has committed.
public struct AppendPlan: Sendable {
    /// One result per call, in the order of the calls: its messages (new or duplicate), or
    /// `.notFound` when one of its rooms does not exist, in which case none of its messages is stored.
    public var results: [Result<[AppendResult], StoreError>]
    /// The messages to insert, in `seq` order per room.
    public var newMessages: [Message]
    /// The newest `seq` of each existing room of the batch, after the batch.
    public var lastSeqs: [String: Int]
    /// The rooms whose newest `seq` the batch moves: those whose `last_seq` to write.
    public var changedRooms: Set<String>
    /// The senders' read markers: sending a message means having read the room up to its end.
    public var readMarkers: [ReadMarker]
}

/// The rules of appending messages, without any I/O, so that every backend numbers, deduplicates
/// and marks alike: each backend loads what the planner needs (the rooms' newest `seq` and the
/// stored messages with the batch's idempotency keys), asks for a plan, and writes it in one
/// transaction.
///
/// ```swift
/// let keys = AppendPlanner.clientKeys(of: calls, existingRooms: Set(lastSeqs.keys))
/// let plan = AppendPlanner.plan(calls, lastSeqs: lastSeqs, stored: try await load(keys))
/// ```
public enum AppendPlanner {
    /// The idempotency keys to look up: those of the calls whose rooms all exist.
    public static func clientKeys(of calls: [[NewMessage]], existingRooms: Set<String>) -> Set<ClientKey> {
        Set(calls.filter { accepted($0, existingRooms) }.flatMap { $0.compactMap(\.clientKey) })
    }

    /// Numbers the batch's messages and decides which are duplicates.
    ///
    /// - Parameters:
    ///   - calls: the messages of each `append` call, in the order the calls were made.
    ///   - lastSeqs: the newest `seq` of each room of the batch that exists; a room absent from it
    ///     is unknown, and a call naming one fails with `.notFound` and stores nothing.
    ///   - stored: stored messages by idempotency key (at least those of ``clientKeys(of:existingRooms:)``).
    ///   - makeId: the id of a new message created at `createdAt` milliseconds; by default random
    ///     ids that sort by time.
    public static func plan(
        _ calls: [[NewMessage]], lastSeqs: [String: Int], stored: [ClientKey: Message], makeId: ((Int) -> String)? = nil
    ) -> AppendPlan {
        let makeId = makeId ?? { Ids.makeOrdered("m_", milliseconds: $0) }
        var lastSeqs = lastSeqs
        var stored = stored
        let existingRooms = Set(lastSeqs.keys)
        var results: [Result<[AppendResult], StoreError>] = []
        var newMessages: [Message] = []
        var changedRooms: Set<String> = []
        var senders: [ReadMarker] = []
        var seenSenders: Set<Sender> = []
        for messages in calls {
            guard accepted(messages, existingRooms) else {
                let unknown = messages.first { !existingRooms.contains($0.roomId) }?.roomId ?? ""
                results.append(.failure(StoreError(.notFound, "no room with id \(unknown)")))
                continue
            }
            var appended: [AppendResult] = []
            for new in messages {
                if seenSenders.insert(Sender(roomId: new.roomId, userId: new.userId)).inserted {
                    senders.append(ReadMarker(roomId: new.roomId, userId: new.userId, seq: 0))
                }
                let clientKey = new.clientKey
                if let clientKey, let earlier = stored[clientKey] {
                    appended.append(AppendResult(message: earlier, duplicate: true))
                    continue
                }
                let seq = (lastSeqs[new.roomId] ?? 0) + 1
                lastSeqs[new.roomId] = seq
                changedRooms.insert(new.roomId)
                let message = Message(
                    id: makeId(new.now), roomId: new.roomId, seq: seq, userId: new.userId, content: new.content,
                    createdAt: new.now, clientId: new.clientId, replyTo: new.replyTo, meta: new.meta == .null ? nil : new.meta)
                // Remembered at once, so that a repeat later in this same batch is caught too.
                if let clientKey { stored[clientKey] = message }
                newMessages.append(message)
                appended.append(AppendResult(message: message, duplicate: false))
            }
            results.append(.success(appended))
        }
        let readMarkers = senders.map { ReadMarker(roomId: $0.roomId, userId: $0.userId, seq: lastSeqs[$0.roomId] ?? 0) }
        return AppendPlan(results: results, newMessages: newMessages, lastSeqs: lastSeqs, changedRooms: changedRooms, readMarkers: readMarkers)
    }

    /// A user sending to a room: whose read marker the batch moves.
    private struct Sender: Hashable {
        var roomId: String
        var userId: String
    }

    private static func accepted(_ messages: [NewMessage], _ existingRooms: Set<String>) -> Bool {
        messages.allSatisfy { existingRooms.contains($0.roomId) }
    }
}

/// The contract's paging rules for history, as bounds for a query: the newest `limit` messages,
/// those just below `before`, or those just above `after` (up to `before` when both are given);
/// always answered ascending.
///
/// A backend reads `seq` in `(lowerBound, upperBound)` ordered by ``ascending``, at most
/// ``fetchCount`` rows (one more than the page, which tells whether more lie beyond it), then
/// hands them to ``page(_:)``.
public struct HistoryWindow: Sendable, Hashable {
    /// Exclusive lower bound of `seq`.
    public var lowerBound: Int
    /// Exclusive upper bound of `seq`.
    public var upperBound: Int
    /// Whether to read upwards from `lowerBound` (only with `after`); otherwise downwards from `upperBound`.
    public var ascending: Bool
    /// The page size; a `limit` under 1 gives an empty page that still answers `hasMore`.
    public var pageSize: Int
    /// Rows to read: one more than the page.
    public var fetchCount: Int { pageSize + 1 }

    public init(after: Int?, before: Int?, limit: Int) {
        lowerBound = after ?? 0
        upperBound = before ?? Int.max
        ascending = after != nil
        // Below Int.max, so that asking for one row more cannot overflow.
        pageSize = min(max(limit, 0), Int.max - 1)
    }

    /// The page from the rows read in the window's order.
    public func page(_ rows: [Message]) -> HistoryPage {
        var messages = Array(rows.prefix(pageSize))
        if !ascending { messages.reverse() }
        return HistoryPage(messages: messages, hasMore: rows.count > pageSize)
    }
}

import Logging
import SQLiteNIO
import Synchronization
import SwitchboardProtocol
import SwitchboardStore

/// A ``ChatStore`` kept in one SQLite file, for a server that runs as one process.
///
/// One writer thread, of its own so that its fsyncs never hold up reads, does every write, one at a
/// time: messages on a connection driven synchronously (``DirectConnection``), everything else on a
/// sqlite-nio connection; a few reader connections answer queries meanwhile, which WAL mode allows.
/// Messages sent at the same time are stored in one transaction (group commit): one fsync covers
/// them all, and each `append` returns only after that commit.
///
/// ```swift
/// let store = try await SQLiteStore.open(path: "switchboard.db", logger: logger)
/// let result = try await store.append(NewMessage(roomId: room.id, userId: ana.id, content: "hi",
///                                                clientId: nil, replyTo: nil, meta: nil, now: now))
/// try await store.close()
/// ```
public final class SQLiteStore: ChatStore {
    /// How the store uses SQLite. Every field has a default fit for a chat server.
    public struct Configuration: Sendable, Hashable {
        /// How hard SQLite works to make a commit survive a crash of the machine.
        public enum Synchronous: String, Sendable, Hashable {
            /// Each commit reaches the disk before it returns: an ack means the message is durable.
            case full = "FULL"
            /// Commits reach the disk at WAL checkpoints: faster, but a power cut may lose the newest
            /// commits (it never corrupts the database).
            case normal = "NORMAL"
        }

        /// Durability of commits; `.full` by default.
        public var synchronous: Synchronous
        /// The most messages stored by one group commit (512 by default). A bigger backlog is split
        /// into several commits; one `append` call is never split.
        public var maxBatchSize: Int
        /// Reader connections, used in turn (2 by default, at least 1).
        public var readerCount: Int
        /// How long a connection waits for a lock held by another process, such as the admin
        /// command, before it fails (5 s by default).
        public var busyTimeoutMilliseconds: Int
        /// How often a connection of its own copies the WAL into the database (1 s by default).
        /// Nil leaves it to SQLite, which does it inside the commit that fills the WAL, so that
        /// commit (and every message waiting for it) also waits for the copy and its fsync.
        public var checkpointInterval: Duration?

        /// A configuration; the defaults are durable, batch up to 512 messages, read with 2
        /// connections and checkpoint every second off the commit path.
        public init(
            synchronous: Synchronous = .full,
            maxBatchSize: Int = 512,
            readerCount: Int = 2,
            busyTimeoutMilliseconds: Int = 5_000,
            checkpointInterval: Duration? = .seconds(1)
        ) {
            self.synchronous = synchronous
            self.maxBatchSize = maxBatchSize
            self.readerCount = readerCount
            self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
            self.checkpointInterval = checkpointInterval
        }
    }

    let configuration: Configuration
    let logger: Logger
    /// The connection for every write but messages; only the write queue's drain task uses it.
    let writer: SQLiteConnection
    /// The connection that stores messages, in group commits run on the writer's thread; only the
    /// write queue's drain task uses it, so it and `writer` never write at the same time.
    let batchWriter: DirectConnection
    let writerThreadPool: NIOThreadPool
    let readers: ReaderPool
    let checkpointer: Checkpointer?
    let writeQueue = Mutex(WriteQueue())
    /// Each room's newest `seq`, so that a batch needs no query to number its messages. Trusted
    /// because this process is the only one that appends; dropped for the rooms of a failed batch.
    let lastSeqCache = Mutex<[String: Int]>([:])
    /// Group commits done so far, for tests and diagnostics.
    let committedBatches = Atomic<Int>(0)

    private init(
        configuration: Configuration, logger: Logger, writer: SQLiteConnection, batchWriter: DirectConnection, writerThreadPool: NIOThreadPool,
        readers: [SQLiteConnection], checkpointer: Checkpointer?
    ) {
        self.configuration = configuration
        self.logger = logger
        self.writer = writer
        self.batchWriter = batchWriter
        self.writerThreadPool = writerThreadPool
        self.readers = ReaderPool(connections: readers)
        self.checkpointer = checkpointer
    }

    /// Opens (creating it when missing) the database at `path`, in WAL mode, and brings its schema
    /// up to date.
    ///
    /// Throws ``StoreError`` `.unavailable` when the file cannot be opened or is not a database of
    /// this program.
    public static func open(path: String, configuration: Configuration = .init(), logger: Logger) async throws -> SQLiteStore {
        var configuration = configuration
        configuration.maxBatchSize = max(configuration.maxBatchSize, 1)
        configuration.readerCount = max(configuration.readerCount, 1)

        // A thread of its own, so that a commit waiting for fsync never delays a reader.
        let writerThreadPool = NIOThreadPool(numberOfThreads: 1)
        writerThreadPool.start()
        var opened: [SQLiteConnection] = []
        var checkpointer: Checkpointer?
        var batchWriter: DirectConnection?
        do {
            let writer = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: writerThreadPool, logger: logger,
                on: MultiThreadedEventLoopGroup.singleton.any())
            opened.append(writer)
            try await Schema.configureWriter(writer, configuration: configuration, logger: logger)
            try await Schema.migrate(writer, logger: logger)
            let directWriter = try await writerThreadPool.runIfActive { [configuration] in
                let connection = try DirectConnection(path: path, gathersLogWrites: configuration.synchronous == .full)
                do {
                    try Schema.configureBatchWriter(connection, configuration: configuration)
                    return connection
                } catch {
                    connection.close()
                    throw error
                }
            }
            batchWriter = directWriter
            var readers: [SQLiteConnection] = []
            for _ in 0..<configuration.readerCount {
                let reader = try await SQLiteConnection.open(
                    storage: .file(path: path), threadPool: .singleton, logger: logger,
                    on: MultiThreadedEventLoopGroup.singleton.any())
                opened.append(reader)
                try await Schema.configureReader(reader, configuration: configuration)
                readers.append(reader)
            }
            if let interval = configuration.checkpointInterval {
                checkpointer = try await Checkpointer.start(path: path, interval: interval, configuration: configuration, logger: logger)
                // Only now: without the checkpointer, the WAL would grow without end.
                _ = try await writer.query("PRAGMA wal_autocheckpoint = 0")
                try await writerThreadPool.runIfActive { try directWriter.execute("PRAGMA wal_autocheckpoint = 0") }
            }
            return SQLiteStore(
                configuration: configuration, logger: logger, writer: writer, batchWriter: directWriter, writerThreadPool: writerThreadPool,
                readers: readers, checkpointer: checkpointer)
        } catch {
            try? await checkpointer?.stop()
            if let batchWriter { _ = try? await writerThreadPool.runIfActive { batchWriter.close() } }
            for connection in opened { try? await connection.close() }
            try? await writerThreadPool.shutdownGracefully()
            let reason = (error as? StoreError)?.message ?? String(describing: error)
            throw StoreError(
                .unavailable, "cannot open SQLite database at \(path): \(reason); check the folder exists and is writable",
                cause: error)
        }
    }

    /// Waits for the writes already accepted, then closes every connection. Later calls throw
    /// `.unavailable`; closing twice does nothing.
    public func close() async throws {
        let isFirstClose = writeQueue.withLock { queue in
            defer { queue.isClosed = true }
            return !queue.isClosed
        }
        guard isFirstClose else { return }
        await waitUntilWritesDrained()
        // Every step runs even when one fails (a cancelled caller, say): a connection dropped
        // without being closed stops the process (sqlite-nio asserts in its deinit).
        var firstError: (any Error)?
        func attempt(_ step: () async throws -> Void) async {
            do { try await step() } catch { firstError = firstError ?? error }
        }
        await attempt { try await checkpointer?.stop() }
        await attempt { try await readers.close() }
        await attempt { try await writer.close() }
        await attempt { try await writerThreadPool.runIfActive { [batchWriter] in batchWriter.close() } }
        await attempt { try await writerThreadPool.shutdownGracefully() }
        if let firstError { throw firstError }
    }

    static let closedError = StoreError(.unavailable, "the store is closed")

    /// Wraps SQLite's errors so that callers see only `StoreError`.
    static func storeError(_ error: any Error) -> StoreError {
        (error as? StoreError) ?? StoreError(.unavailable, "SQLite failed", cause: error)
    }

    /// Runs `body` on one of the reader connections.
    ///
    /// Each query is one statement, hence one consistent snapshot; queries that must agree with each
    /// other are written as one statement, because concurrent callers share a reader connection
    /// and so cannot hold a transaction open on it.
    func read<T>(_ body: (SQLiteConnection) async throws -> T) async throws -> T {
        guard let connection = readers.checkOut() else { throw Self.closedError }
        defer { readers.checkIn() }
        do {
            return try await body(connection)
        } catch {
            throw Self.storeError(error)
        }
    }

    /// Runs `body` on the writer connection, between group commits, in a transaction shared with
    /// the other writes waiting at the time (each rolled back alone when it throws); returns once
    /// that transaction has committed.
    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let operation = PendingOperation(
                run: { connection in
                    do {
                        let value = try await body(connection)
                        return (true, { committed in continuation.resume(with: committed.map { value }.mapError(Self.storeError)) })
                    } catch {
                        return (false, { _ in continuation.resume(throwing: Self.storeError(error)) })
                    }
                },
                fail: { error in continuation.resume(throwing: Self.storeError(error)) }
            )
            if !submit(.operation(operation)) {
                continuation.resume(throwing: Self.closedError)
            }
        }
    }

    /// Runs `body` between BEGIN IMMEDIATE and COMMIT, rolling back on any error so that nothing is
    /// half-stored. IMMEDIATE takes the write lock up front, so the body never fails half-way for
    /// want of it.
    static func transaction<T>(on connection: SQLiteConnection, _ body: (SQLiteConnection) async throws -> T) async throws -> T {
        _ = try await connection.query("BEGIN IMMEDIATE")
        do {
            let value = try await body(connection)
            _ = try await connection.query("COMMIT")
            return value
        } catch {
            _ = try? await connection.query("ROLLBACK")
            throw error
        }
    }
}

/// The reader connections, handed out in turn, and a count of the reads in flight so that closing
/// never pulls a connection from under a query.
final class ReaderPool: Sendable {
    private struct State {
        var next = 0
        var inFlight = 0
        var isClosed = false
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let connections: [SQLiteConnection]
    private let state = Mutex(State())

    init(connections: [SQLiteConnection]) {
        self.connections = connections
    }

    /// A connection for one read, nil once closing has begun. Pair it with ``checkIn()``.
    func checkOut() -> SQLiteConnection? {
        state.withLock { state in
            guard !state.isClosed else { return nil }
            state.inFlight += 1
            state.next = (state.next + 1) % connections.count
            return connections[state.next]
        }
    }

    func checkIn() {
        let waiters = state.withLock { state in
            state.inFlight -= 1
            guard state.isClosed, state.inFlight == 0 else { return [CheckedContinuation<Void, Never>]() }
            defer { state.idleWaiters = [] }
            return state.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Refuses new reads, waits for those in flight, then closes the connections.
    func close() async throws {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isIdle = state.withLock { state in
                state.isClosed = true
                if state.inFlight == 0 { return true }
                state.idleWaiters.append(continuation)
                return false
            }
            if isIdle { continuation.resume() }
        }
        var firstError: (any Error)?
        for connection in connections {
            do { try await connection.close() } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }
}

/// Copies the WAL into the database from a connection and thread of its own, every `interval`.
///
/// Doing it here rather than in the commit that fills the WAL (SQLite's default) keeps most of
/// the copy and its fsync out of the writer's thread and out of the latency of the messages
/// waiting for that commit.
final class Checkpointer: Sendable {
    private let connection: SQLiteConnection
    private let threadPool: NIOThreadPool
    private let task: Task<Void, Never>
    /// WAL frames (pages) past which the WAL is made to start over: 16 MB of 4 KB pages, four
    /// times SQLite's own checkpoint threshold.
    private static let restartFrames = 4000

    private init(connection: SQLiteConnection, threadPool: NIOThreadPool, task: Task<Void, Never>) {
        self.connection = connection
        self.threadPool = threadPool
        self.task = task
    }

    static func start(path: String, interval: Duration, configuration: SQLiteStore.Configuration, logger: Logger) async throws -> Checkpointer {
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        do {
            let connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
            _ = try await connection.query("PRAGMA busy_timeout = \(max(configuration.busyTimeoutMilliseconds, 0))")
            let restartFrames = Self.restartFrames
            let task = Task {
                while !Task.isCancelled {
                    do {
                        try await Task.sleep(for: interval)
                        // Copies what it can without blocking anyone; when it copied everything,
                        // the next commit starts the WAL over. Under steady load new commits
                        // land meanwhile, so it never catches up, and the WAL would only grow
                        // (appending to a file costs the writer far more than overwriting it).
                        // So past `restartFrames` a RESTART follows: it copies the few frames
                        // left, holding the writer back for that long, and the WAL starts over.
                        let passive = try await connection.query("PRAGMA wal_checkpoint(PASSIVE)").first
                        let log = passive?.column("log")?.integer ?? 0
                        if log >= restartFrames {
                            _ = try await connection.query("PRAGMA wal_checkpoint(RESTART)")
                        }
                    } catch is CancellationError {
                        return
                    } catch {
                        logger.warning("WAL checkpoint failed", metadata: ["error": "\(error)"])
                    }
                }
            }
            return Checkpointer(connection: connection, threadPool: threadPool, task: task)
        } catch {
            try? await threadPool.shutdownGracefully()
            throw error
        }
    }

    /// Stops checkpointing and closes the connection; SQLite checkpoints once more when the
    /// store's last connection closes.
    func stop() async throws {
        task.cancel()
        await task.value
        try await connection.close()
        try await threadPool.shutdownGracefully()
    }
}

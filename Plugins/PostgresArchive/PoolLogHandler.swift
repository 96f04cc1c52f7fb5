import Logging

/// The log of postgres-nio's pool without its warning that a connection was asked for before
/// `PostgresClient.run()`: the pool is started in a task just before its first query, so the two
/// can race on a busy machine, and the query waits for the pool either way.
struct PoolLogHandler: LogHandler {
    var wrapped: any LogHandler

    /// `logger`, with that warning left out.
    static func logger(_ logger: Logger) -> Logger {
        var pool = logger
        pool.handler = PoolLogHandler(wrapped: logger.handler)
        return pool
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        if event.level == .warning, event.message.description.hasPrefix("Trying to lease connection from `PostgresClient`") { return }
        wrapped.log(event: event)
    }
}

import ArgumentParser
import SwitchboardServer

/// `switchboard serve` options of the WebSocket transport.
struct WebSocketTransportOptions: ParsableArguments {
    @Option(help: """
        Milliseconds a connection's frames wait to go out together in one write; 0 writes once per \
        event-loop tick (env: SWITCHBOARD_WRITE_DELAY_MS).
        """)
    var writeDelayMs: Int = environment("SWITCHBOARD_WRITE_DELAY_MS", 0)

    func validate() throws {
        guard (0...1000).contains(writeDelayMs) else { throw ValidationError("--write-delay-ms must be 0 (off) to 1000, not \(writeDelayMs)") }
    }

    func apply(to configuration: inout ServerConfiguration) {
        configuration.writeDelay = .milliseconds(writeDelayMs)
    }
}

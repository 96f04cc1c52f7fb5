// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "switchboard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchboard", targets: ["SwitchboardCLI"]),
        .library(name: "SwitchboardProtocol", targets: ["SwitchboardProtocol"]),
        .library(name: "SwitchboardStore", targets: ["SwitchboardStore"]),
        .library(name: "SwitchboardSQLite", targets: ["SwitchboardSQLite"]),
        .library(name: "SwitchboardServer", targets: ["SwitchboardServer"]),
        .library(name: "SwitchboardClient", targets: ["SwitchboardClient"]),
        .library(name: "SwitchboardTesting", targets: ["SwitchboardTesting"]),
        .library(name: "SwitchboardAgent", targets: ["SwitchboardAgent"]),
        .library(name: "SwitchboardAgentTesting", targets: ["SwitchboardAgentTesting"]),
        .library(name: "SwitchboardBots", targets: ["EchoBot", "DiceBot", "RemindBot", "WelcomeBot", "KarmaBot"]),
        .library(name: "SwitchboardPostgres", targets: ["SwitchboardPostgres"]),
        .library(name: "IRCBridge", targets: ["IRCBridge"]),
        .library(name: "PostgresArchive", targets: ["PostgresArchive"]),
        .executable(name: "switchboard-bench", targets: ["LoadGenerator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.24.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.25.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.21.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.12.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.0"),
    ],
    targets: [
        // Wire types and their JSON codec. Depends on nothing but the standard library and Foundation.
        .target(name: "SwitchboardProtocol"),
        // Starting programs with posix_spawn (Foundation's Process.run crashes now and then on Linux).
        .target(name: "Spawn"),
        // The storage seam: the protocol every backend implements, its values, and the rules of
        // appending shared by every backend. No driver.
        .target(name: "SwitchboardStore", dependencies: ["SwitchboardProtocol"]),
        // A SQLite VFS that writes a commit's write-ahead log in a few system calls (C: SQLite's VFS
        // is a table of C function pointers over a file struct SQLite allocates).
        .target(name: "CSQLiteGatheredWAL", dependencies: [.product(name: "SQLiteNIO", package: "sqlite-nio")]),
        // The SQLite storage backend, the default: one file, one process.
        .target(
            name: "SwitchboardSQLite",
            dependencies: [
                "CSQLiteGatheredWAL",
                "SwitchboardProtocol",
                "SwitchboardStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]
        ),
        // The web page that `switchboard serve` serves at `/`: plain HTML, CSS and JavaScript modules, no build step.
        .target(name: "SwitchboardWeb", resources: [.copy("Page")]),
        // The bundled chat server: HTTP API, WebSocket endpoint, fan-out, presence, typing, limits.
        .target(
            name: "SwitchboardServer",
            dependencies: [
                "SwitchboardProtocol",
                "SwitchboardStore",
                "SwitchboardWeb",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The client library: reconnects, resends, recovers; used by bots, bridges and apps.
        .target(
            name: "SwitchboardClient",
            dependencies: [
                "SwitchboardProtocol",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "WSClient", package: "swift-websocket"),
            ]
        ),
        // The agent kit: bots as plugins on the client library (commands, storage, schedules, exec plugins).
        .target(
            name: "SwitchboardAgent",
            dependencies: [
                "Spawn",
                "SwitchboardClient",
                "SwitchboardProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                // Exec plugins, webhooks and health (Exec/, Webhooks/, Health/).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            exclude: ["Exec/exec-plugin.schema.json"]
        ),
        // The test harness for plugin authors: a server and an agent in one line, a tester, a test clock.
        .target(
            name: "SwitchboardAgentTesting",
            dependencies: [
                "SwitchboardAgent",
                "SwitchboardClient",
                "SwitchboardProtocol",
                "SwitchboardServer",
                "SwitchboardStore",
                "SwitchboardTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The bundled bots, each a plugin written as a plugin author would.
        .target(name: "EchoBot", dependencies: ["SwitchboardAgent", "SwitchboardClient"], path: "Bots/Echo"),
        .target(name: "DiceBot", dependencies: ["SwitchboardAgent", "SwitchboardClient"], path: "Bots/Dice"),
        .target(name: "RemindBot", dependencies: ["SwitchboardAgent", "SwitchboardClient"], path: "Bots/Remind"),
        .target(name: "WelcomeBot", dependencies: ["SwitchboardAgent", "SwitchboardClient"], path: "Bots/Welcome"),
        .target(name: "KarmaBot", dependencies: ["SwitchboardAgent", "SwitchboardClient"], path: "Bots/Karma"),
        // The PostgreSQL storage backend: one database shared by several processes.
        .target(
            name: "SwitchboardPostgres",
            dependencies: [
                "SwitchboardProtocol",
                "SwitchboardStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        // The IRC bridge, an agent plugin.
        .target(
            name: "IRCBridge",
            dependencies: [
                "SwitchboardAgent",
                "SwitchboardClient",
                "SwitchboardProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Plugins/IRCBridge"
        ),
        // The archive bridge, an agent plugin: every message into a PostgreSQL schema of its own,
        // with full-text search and export. Not the server's PostgreSQL backend: only the agent kit,
        // the client and postgres-nio.
        .target(
            name: "PostgresArchive",
            dependencies: [
                "SwitchboardAgent",
                "SwitchboardClient",
                "SwitchboardProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Plugins/PostgresArchive"
        ),
        // Helpers for tests: a real server on port 0 and raw protocol clients.
        .target(
            name: "SwitchboardTesting",
            dependencies: [
                "SwitchboardProtocol",
                "SwitchboardPostgres",
                "SwitchboardServer",
                "SwitchboardSQLite",
                "SwitchboardStore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "WSClient", package: "swift-websocket"),
            ]
        ),
        .executableTarget(
            name: "SwitchboardCLI",
            dependencies: [
                "DiceBot",
                "EchoBot",
                "IRCBridge",
                "KarmaBot",
                "PostgresArchive",
                "RemindBot",
                "SwitchboardAgent",
                "WelcomeBot",
                "SwitchboardClient",
                "SwitchboardProtocol",
                "SwitchboardPostgres",
                "SwitchboardServer",
                "SwitchboardSQLite",
                "SwitchboardStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The load generator: drives any server that speaks the protocol.
        .executableTarget(
            name: "LoadGenerator",
            dependencies: [
                "Spawn",
                "SwitchboardProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Benchmarks/LoadGenerator"
        ),
        .testTarget(name: "SwitchboardProtocolTests", dependencies: ["SwitchboardProtocol"]),
        // What N bot clients cost in one process (memory, threads); see BENCHMARKS.md.
        .executableTarget(
            name: "ClientFootprint",
            dependencies: ["SwitchboardClient", .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/ClientFootprint"
        ),
        .testTarget(
            name: "SwitchboardClientTests",
            dependencies: [
                "SwitchboardClient", "SwitchboardStore", "SwitchboardTesting",
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Runs the built `switchboard` binary, as people and scripts do.
        .testTarget(
            name: "SwitchboardCLITests",
            dependencies: ["Spawn", "SwitchboardProtocol", "SwitchboardStore", "SwitchboardTesting", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "LoadGeneratorTests", dependencies: ["LoadGenerator", "SwitchboardTesting"]),
        // The store's conformance suite, run on every backend, and the SQLite backend's own tests.
        .testTarget(
            name: "SwitchboardStoreTests",
            dependencies: [
                "SwitchboardPostgres", "SwitchboardSQLite", "SwitchboardStore", "SwitchboardTesting",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(name: "SwitchboardAgentTests", dependencies: ["SwitchboardAgent", "SwitchboardAgentTesting", "SwitchboardTesting", "EchoBot"]),
        // Every bundled bot, tested with the harness (one target, to keep linking cheap).
        .testTarget(
            name: "BotsTests",
            dependencies: ["SwitchboardAgent", "SwitchboardAgentTesting", "EchoBot", "DiceBot", "RemindBot", "WelcomeBot", "KarmaBot"]
        ),
        // Exec plugins (with the Python example bot), webhooks and the agent's health endpoint.
        .testTarget(
            name: "SwitchboardAgentExtrasTests",
            dependencies: [
                "Spawn",
                "SwitchboardAgent",
                "SwitchboardAgentTesting",
                "SwitchboardClient",
                "SwitchboardTesting",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The IRC bridge against real IRC servers (scripts/services/irc.sh) and a real chat server.
        .testTarget(
            name: "IRCBridgeTests",
            dependencies: [
                "IRCBridge",
                "Spawn",
                "SwitchboardAgentTesting",
                "SwitchboardTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The archive bridge against a real PostgreSQL (scripts/services/postgres.sh) and a real chat server.
        .testTarget(
            name: "PostgresArchiveTests",
            dependencies: [
                "PostgresArchive",
                "Spawn",
                "SwitchboardAgentTesting",
                "SwitchboardTesting",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "SwitchboardServerTests",
            dependencies: [
                "SwitchboardServer",
                "SwitchboardTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WSClient", package: "swift-websocket"),
            ]
        ),
    ]
)

// Micro-benchmarks of the hot paths (ordo-one/benchmark), only when asked for, so that the normal
// build stays lean: `SWITCHBOARD_MICROBENCHMARKS=1 swift package --disable-sandbox benchmark`.
// They reach the server's internal types through `@testable import`, so in this mode only the
// server module is compiled with testing enabled.
import class Foundation.ProcessInfo

if ProcessInfo.processInfo.environment["SWITCHBOARD_MICROBENCHMARKS"] != nil {
    package.dependencies.append(.package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]))
    if let server = package.targets.first(where: { $0.name == "SwitchboardServer" }) {
        server.swiftSettings = (server.swiftSettings ?? []) + [.unsafeFlags(["-enable-testing"])]
    }
    package.targets.append(
        .executableTarget(
            name: "Microbenchmarks",
            dependencies: [
                "SwitchboardProtocol",
                "SwitchboardServer",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Benchmarks/Microbenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    )
}

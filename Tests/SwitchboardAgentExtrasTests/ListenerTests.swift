import Foundation
import NIOHTTP1
import Synchronization
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardAgentTesting
import SwitchboardTesting
import Testing

@testable import SwitchboardAgent

/// The webhook and health listeners over real HTTP, posting through a real client to a real server.
@Suite("Webhook and health listeners", .timeLimit(.minutes(1)))
struct ListenerTests {
    /// Runs `listen` (given a port callback) in the background and `body` with the port.
    static func withListener(
        _ listen: @escaping @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> Void,
        _ body: (Int) async throws -> Void
    ) async throws {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let task = Task { try await listen { port in continuation.yield(port) } }
        defer { task.cancel() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestFailure("the listener did not start") }
        try await body(port)
        task.cancel()
        try await task.value
    }

    @Test("a signed webhook posts into the room; a bad signature gets 401, is logged and posts nothing; a bearer secret works")
    func webhooks() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            let hookbot = try await server.register("hookbot")
            let room = try await server.createRoom("deploys", token: ana.token, members: [hookbot.user.id])
            let recorder = LogRecorder()
            var configuration = WebhookConfiguration(hooks: [
                .init(path: "/github", room: room.id, authentication: .hmac(secret: "gh-secret"),
                      template: try MessageTemplate("{{ pusher.name }} pushed to {{ repository.full_name }}")),
                .init(path: "/alerts", room: room.id, authentication: .bearer(secret: "alert-token")),
            ])
            configuration.port = 0
            try await ChatClient.withClient(configuration: clientConfiguration(server, token: hookbot.token), logger: quietLogger("hookbot")) { client in
                let listener = WebhookListener(configuration: configuration, logger: recorder.logger()) { hook, text in
                    try await client.send(text, to: hook.room)
                }
                try await Self.withListener({ try await listener.run(onListening: $0) }) { port in
                    let socket = try await server.connect(token: ana.token)
                    _ = try await socket.join(room.id)

                    let payload = Array(#"{"pusher":{"name":"ana"},"repository":{"full_name":"acme/site"}}"#.utf8)
                    let signature = WebhookAuthentication.signature(of: payload, secret: "gh-secret")
                    let good = try await http(.POST, port: port, "/github", headers: [("X-Hub-Signature-256", signature), ("Content-Type", "application/json")], body: payload)
                    #expect(good.status == 201)
                    #expect(good.json?["message"]?["content"] == "ana pushed to acme/site")
                    let posted = try await socket.next("message").decode(Message.self)
                    #expect(posted.content == "ana pushed to acme/site")
                    #expect(posted.userId == hookbot.user.id)

                    let forged = WebhookAuthentication.signature(of: payload, secret: "guessed")
                    let bad = try await http(.POST, port: port, "/github", headers: [("X-Hub-Signature-256", forged)], body: payload)
                    #expect(bad.status == 401)
                    #expect(bad.json?["error"]?["code"] == "unauthorized")
                    try await recorder.waitFor("webhook refused: the signature does not match the body and the secret")
                    let unsigned = try await http(.POST, port: port, "/github", body: payload)
                    #expect(unsigned.status == 401)

                    let wrongBearer = try await http(.POST, port: port, "/alerts", headers: [("Authorization", "Bearer nope")], body: Array("disk full".utf8))
                    #expect(wrongBearer.status == 401)
                    let alert = try await http(.POST, port: port, "/alerts", headers: [("Authorization", "Bearer alert-token")], body: Array("disk full on db1".utf8))
                    #expect(alert.status == 201)
                    // The next message in the room is the alert: the refused requests posted nothing.
                    let next = try await socket.next("message").decode(Message.self)
                    #expect(next.content == "disk full on db1")
                    #expect(next.seq == posted.seq + 1)

                    #expect(try await http(.POST, port: port, "/nowhere", body: payload).status == 404)
                    await socket.close()
                }
            }
        }
    }

    @Test("a webhook for a room the bot is not in answers 502 and posts nothing")
    func notAMember() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            let hookbot = try await server.register("hookbot")
            let closed = try await server.createRoom("private", token: ana.token)
            var configuration = WebhookConfiguration(hooks: [.init(path: "/in", room: closed.id, authentication: .bearer(secret: "t"))])
            configuration.port = 0
            try await ChatClient.withClient(configuration: clientConfiguration(server, token: hookbot.token), logger: quietLogger("hookbot")) { client in
                let listener = WebhookListener(configuration: configuration, logger: quietLogger("webhooks")) { hook, text in
                    try await client.send(text, to: hook.room)
                }
                try await Self.withListener({ try await listener.run(onListening: $0) }) { port in
                    let answer = try await http(.POST, port: port, "/in", headers: [("Authorization", "Bearer t")], body: Array("hello".utf8))
                    #expect(answer.status == 502)
                    #expect(try await server.request(.GET, "/api/rooms/\(closed.id)", token: ana.token).decode(RoomResponse.self).room.lastSeq == 0)
                }
            }
        }
    }

    @Test("/healthz shows each bot's state, events, errors, latency and outbox; /metrics its state, events and outbox")
    func health() async throws {
        try await TestServer.withServer { server in
            let dice = try await server.register("dice")
            try await ChatClient.withClient(configuration: clientConfiguration(server, token: dice.token), logger: quietLogger("dice")) { client in
                try await eventually("the bot connected") { client.status == .connected }
                let ghostIsThere = Mutex(true)
                let figures: @Sendable () -> [BotFigures] = {
                    var all = [
                        BotFigures(name: "dice", status: client.status, eventsHandled: 2, handlerErrors: 1, handlerSeconds: 0.25, outboxLength: client.pendingMessages.count)
                    ]
                    if ghostIsThere.withLock({ $0 }) {
                        all.append(BotFigures(name: "ghost", status: .reconnecting(attempt: 3, nextDelay: .seconds(2)), eventsHandled: 0, handlerErrors: 0, handlerSeconds: 0, outboxLength: 4))
                    }
                    return all
                }
                try await Self.withListener({ onListening in
                    try await HealthListener(port: 0, figures: figures, logger: quietLogger("health"), onListening: onListening).run()
                }) { port in
                    let degraded = try await http(.GET, port: port, "/healthz")
                    #expect(degraded.status == 503)
                    #expect(degraded.json?["status"] == "degraded")
                    #expect(degraded.json?["bots"] == [
                        ["name": "dice", "state": "connected", "online": true, "eventsHandled": 2, "handlerErrors": 1, "handlerSeconds": 0.25, "outbox": 0],
                        ["name": "ghost", "state": "reconnecting", "online": false, "eventsHandled": 0, "handlerErrors": 0, "handlerSeconds": 0, "outbox": 4],
                    ])

                    let text = try await http(.GET, port: port, "/metrics")
                    #expect(text.status == 200)
                    #expect(text.contentType?.hasPrefix("text/plain; version=0.0.4") == true)
                    for line in [
                        "# TYPE switchboard_agent_connection_state gauge",
                        #"switchboard_agent_connection_state{bot="dice",state="connected"} 1"#,
                        #"switchboard_agent_connection_state{bot="dice",state="reconnecting"} 0"#,
                        #"switchboard_agent_connection_state{bot="ghost",state="reconnecting"} 1"#,
                        "# TYPE switchboard_agent_events_handled_total counter",
                        #"switchboard_agent_events_handled_total{bot="dice"} 2"#,
                        #"switchboard_agent_outbox_length{bot="ghost"} 4"#,
                    ] {
                        #expect(text.text.contains(line + "\n"), "missing: \(line)")
                    }

                    ghostIsThere.withLock { $0 = false }
                    let healthy = try await http(.GET, port: port, "/healthz")
                    #expect(healthy.status == 200)
                    #expect(healthy.json?["status"] == "ok")
                    #expect(!(try await http(.GET, port: port, "/metrics")).text.contains(#"bot="ghost""#))
                }
            }
        }
    }

    @Test("label values are escaped in the metrics text")
    func escaping() {
        let report = HealthReport([BotFigures(name: "a\"b\\c\nd", status: .connected, eventsHandled: 0, handlerErrors: 0, handlerSeconds: 0, outboxLength: 0)])
        #expect(report.prometheusText().contains(#"switchboard_agent_outbox_length{bot="a\"b\\c\nd"} 0"#))
    }

    @Test("the webhooks plugin of an agent posts a signed request into the room named in its configuration")
    func webhooksPlugin() async throws {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var configuration = WebhookConfiguration(hooks: [.init(path: "/ci", room: "test-room", authentication: .hmac(secret: "ci-secret"))])
        configuration.port = 0
        let plugin = WebhooksPlugin(configuration: configuration) { continuation.yield($0) }
        try await BotTest.run(plugins: [plugin]) { test in
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let body = Array("build 42 passed".utf8)
            let forged = try await http(.POST, port: port, "/ci", headers: [("X-Hub-Signature-256", WebhookAuthentication.signature(of: body, secret: "nope"))], body: body)
            #expect(forged.status == 401)
            let answer = try await http(.POST, port: port, "/ci", headers: [("X-Hub-Signature-256", WebhookAuthentication.signature(of: body, secret: "ci-secret"))], body: body)
            #expect(answer.status == 201)
            let posted = try await test.reply()
            #expect(posted.content == "build 42 passed")
            #expect(posted.roomId == test.room.id)
            #expect(posted.seq == 1)  // the forged request posted nothing before it
        }
    }

    @Test("an agent's /healthz and /metrics count its bot's handled events, errors per plugin and handler latency as a histogram, and show its connection")
    func agentHealth() async throws {
        try await BotTest.run(plugins: [Parrot()]) { test in
            #expect(try await test.ask("hello") == "hello")
            try await test.say("boom")
            try await eventually("the handled event and the error counted") {
                test.agent.figures().first.map { $0.eventsHandled >= 1 && $0.handlerErrors == 1 } ?? false
            }
            try await Self.withListener({ onListening in
                try await HealthListener(port: 0, agent: test.agent, logger: quietLogger("health"), onListening: onListening).run()
            }) { port in
                let health = try await http(.GET, port: port, "/healthz")
                #expect(health.status == 200)
                #expect(health.json?["bots"]?.arrayItems?.first?["name"] == "testbot")
                #expect(health.json?["bots"]?.arrayItems?.first?["state"] == "connected")
                #expect(health.json?["bots"]?.arrayItems?.first?["handlerErrors"] == 1)
                let metrics = try await http(.GET, port: port, "/metrics").text
                #expect(metrics.contains(#"switchboard_agent_connection_state{bot="testbot",state="connected"} 1"#))
                #expect(metrics.contains(#"switchboard_agent_outbox_length{bot="testbot"} 0"#))
                // Errors and latency per bot and plugin; the latency as a histogram of every call.
                #expect(sample(metrics, #"switchboard_agent_handler_errors_total{bot="testbot",plugin="Parrot"}"#) == 1)
                #expect(metrics.contains("# TYPE switchboard_agent_handler_duration_seconds histogram\n"))
                let calls = try #require(sample(metrics, #"switchboard_agent_handler_duration_seconds_count{bot="testbot",plugin="Parrot"}"#))
                #expect(calls >= 2, "hello and boom")
                #expect(sample(metrics, #"switchboard_agent_handler_duration_seconds_bucket{bot="testbot",plugin="Parrot",le="+Inf"}"#) == calls)
                let buckets = metrics.split(separator: "\n").filter { $0.hasPrefix(#"switchboard_agent_handler_duration_seconds_bucket{bot="testbot",plugin="Parrot","#) }
                #expect(buckets.count == 14, "13 bounds and +Inf: \(buckets)")
                #expect(try #require(sample(metrics, #"switchboard_agent_handler_duration_seconds_sum{bot="testbot",plugin="Parrot"}"#)) > 0)
            }
        }
    }
}

/// Says back what it hears; fails on "boom".
private struct Parrot: Plugin {
    struct Boom: Error {}

    func onMessage(_ message: IncomingMessage, context: PluginContext) async throws {
        if message.text == "boom" { throw Boom() }
        try await context.reply(message.text)
    }
}

extension JSONValue {
    var arrayItems: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
}

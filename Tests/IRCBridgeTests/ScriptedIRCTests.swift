import Foundation
import NIOCore
import NIOPosix
import SwitchboardTesting
import Testing

@testable import IRCBridge

@Suite("IRC client against scripted peers", .serialized)
struct ScriptedIRCTests {
    @Test(.timeLimit(.minutes(1)))
    func saslPlainLogsInBeforeRegistering() async throws {
        try await IRCTestListener.withListener { listener in
            var configuration = clientConfiguration(port: listener.port, nick: "relay", channels: [IRCChannel("#c", key: "k")])
            configuration.session.sasl = SASLCredentials(account: "bridge", password: "s3cret")
            try await withIRCClient(configuration) { _, events in
                let server = try await listener.accept()
                #expect(try await server.next().line == "CAP LS 302")
                #expect(try await server.next().line == "NICK relay")
                _ = try await server.next { $0.command == "USER" }
                try await server.send(":scripted CAP * LS :sasl=PLAIN message-tags")
                #expect(try await server.next().line == "CAP REQ :message-tags sasl")
                try await server.send(":scripted CAP relay ACK :message-tags sasl")
                #expect(try await server.next().line == "AUTHENTICATE PLAIN")
                try await server.send("AUTHENTICATE +")
                let payload = try await server.next()
                #expect(payload.command == "AUTHENTICATE")
                #expect(payload.parameters == [Base64.encode(Array("bridge\0bridge\0s3cret".utf8))])
                try await server.send(":scripted 900 relay relay!u@h bridge :You are now logged in as bridge")
                try await server.send(":scripted 903 relay :SASL authentication successful")
                #expect(try await server.next().line == "CAP END")
                try await server.send(":scripted 001 relay :Welcome")
                #expect(try await events.registered() == "relay")
                #expect(try await server.next().line == "JOIN #c k")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func identifiesToNickServ() async throws {
        try await IRCTestListener.withListener { listener in
            var configuration = clientConfiguration(port: listener.port, nick: "relay", channels: [IRCChannel("#c")])
            configuration.session.nickServPassword = "hunter2"
            try await withIRCClient(configuration) { _, events in
                let server = try await listener.accept()
                _ = try await server.next { $0.command == "USER" }
                try await server.send(":scripted 421 relay CAP :Unknown command")
                try await server.send(":scripted 001 relay :Welcome")
                _ = try await events.registered()
                #expect(try await server.next { $0.command == "PRIVMSG" }.line == "PRIVMSG NickServ :IDENTIFY hunter2")
                #expect(try await server.next { $0.command == "JOIN" }.line == "JOIN #c")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func withoutEchoMessageLinesAreConfirmedByAPingOrQueuedAgain() async throws {
        try await IRCTestListener.withListener { listener in
            let configuration = clientConfiguration(port: listener.port, nick: "relay", channels: [IRCChannel("#c")], flood: .off)
            try await withIRCClient(configuration) { client, events in
                let first = try await listener.accept()
                _ = try await first.next { $0.command == "USER" }
                try await first.send(":scripted 421 relay CAP :Unknown command")
                try await first.send(":scripted 001 relay :Welcome")
                _ = try await events.registered()
                _ = try await first.next { $0.command == "JOIN" }
                try await first.send(":relay!u@h JOIN #c")
                try await events.joined("#c")

                // Lines, then a PING whose answer confirms them.
                try await client.send(["one", "two"], to: "#c")
                try await waitUntil { first.inbox.pending.contains { $0.command == "PING" } }
                #expect(first.inbox.pending.filter { $0.command == "PRIVMSG" || $0.command == "PING" }.map(\.line) == ["PRIVMSG #c one", "PRIVMSG #c two", "PING switchboard-sent-1"])
                for _ in 0..<2 { _ = try await first.next { $0.command == "PRIVMSG" } }
                let marker = try await first.next { $0.command == "PING" }
                #expect(client.status.unconfirmed == 2)
                try await first.send(":scripted PONG scripted :\(marker.parameters.last ?? "")")
                try await waitUntil { client.status.unconfirmed == 0 }

                // A line whose PING goes unanswered when the connection drops: back in front of
                // its queue, to be sent again first after the reconnect.
                try await client.send(["three"], to: "#c")
                try await waitUntil { first.inbox.pending.contains { $0.command == "PING" } }
                #expect(first.inbox.pending.filter { $0.command == "PRIVMSG" }.map(\.line) == ["PRIVMSG #c three"])
                #expect(client.status.unconfirmed == 1)
                await first.close()
                try await waitUntil { client.status.queued == 1 && client.status.unconfirmed == 0 }
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aSilentServerIsLeftAndReconnected() async throws {
        try await IRCTestListener.withListener { listener in
            var configuration = clientConfiguration(port: listener.port, nick: "relay", channels: [])
            // Long beside a step of the test on a loaded machine, so that only the silence counts.
            configuration.session.pingInterval = .milliseconds(1_000)
            configuration.session.pingTimeout = .milliseconds(2_500)
            try await withIRCClient(configuration) { _, events in
                let first = try await listener.accept()
                _ = try await first.next { $0.command == "USER" }
                try await first.send(":scripted 001 relay :Welcome")
                _ = try await events.registered()
                // It pings when quiet; the server answers once, then falls silent.
                let ping = try await first.next { $0.command == "PING" }
                try await first.send(":scripted PONG scripted :\(ping.parameters.last ?? "")")
                _ = try await first.next { $0.command == "PING" }
                let event = try await events.next { if case .disconnected = $0 { true } else { false } }
                #expect("\(event)".contains("PONG"))
                let second = try await listener.accept()
                #expect(try await second.next().line == "CAP LS 302")
            }
        }
    }
}

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

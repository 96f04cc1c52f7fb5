import Foundation
import Logging
import SwitchboardProtocol
import SwitchboardStore
import SwitchboardTesting
import Testing

/// `switchboard send`, `tail` and `chat`, run as a person or a script runs them: the built binary,
/// against a real server, reading what it prints.
@Suite("The client commands", .timeLimit(.minutes(1)))
struct ClientCommandTests {
    @Test("send prints the stored message; the same --client-id twice stores it once")
    func send() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            let room = try await server.createRoom("general", token: ana.token)
            let login = ["--server", server.baseURL, "--token", ana.token]

            let plain = try await Command.run(["send"] + login + ["--room", "general", "deploy", "done"])
            #expect(plain.status == 0)
            #expect(plain.output.hasPrefix("sent #1 to general (id m_"))

            let first = try await Command.run(["send"] + login + ["--room", room.id, "--client-id", "job-7", "--json", "once"])
            let again = try await Command.run(["send"] + login + ["--room", room.id, "--client-id", "job-7", "--json", "once"])
            let stored = try Wire.decode(Message.self, from: Array(first.output.utf8))
            let repeated = try Wire.decode(Message.self, from: Array(again.output.utf8))
            #expect(stored.seq == 2 && stored.content == "once" && stored.clientId == "job-7")
            #expect(repeated.id == stored.id)

            let piped = try await Command.run(["send"] + login + ["--room", "general", "-"], input: "from a pipe\n")
            #expect(piped.output.hasPrefix("sent #3 "))
            let history = try await server.request(.GET, "/api/rooms/\(room.id)/messages", token: ana.token)
                .decode(MessagesResponse.self)
            #expect(history.messages.map(\.content) == ["deploy done", "once", "from a pipe"])
        }
    }

    @Test("send explains what went wrong, and exits with 1")
    func sendErrors() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            let unknownRoom = try await Command.run(["send", "--server", server.baseURL, "--token", ana.token, "--room", "nowhere", "hi"])
            #expect(unknownRoom.status == 1)
            #expect(unknownRoom.errors.contains("cannot send to nowhere"))

            let badToken = try await Command.run(["send", "--server", server.baseURL, "--token", "sb_nope", "--room", "general", "hi"])
            #expect(badToken.status == 1)
            #expect(badToken.errors.contains("the server refused the token"))
        }
        // The server is gone now: its port refuses connections.
        let closedPort = try await TestServer.withServer { $0.baseURL }
        let unreachable = try await Command.run(["send", "--server", closedPort, "--token", "sb_x", "--room", "general", "--timeout", "5", "hi"])
        #expect(unreachable.status == 1)
        #expect(unreachable.errors.contains("cannot reach \(closedPort): is `switchboard serve` running?"))
    }

    @Test("tail --since 0 --json prints the history, then live messages, one JSON object a line")
    func tail() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            let room = try await server.createRoom("general", token: ana.token)
            let socket = try await server.connect(token: ana.token)
            try await socket.sendMessage("before", roomId: room.id)

            let tail = try Command(["tail", "--server", server.baseURL, "--token", ana.token, "--room", "general", "--since", "0", "--json"])
            let first = try await tail.lines(count: 1)
            try await socket.sendMessage("live", roomId: room.id)
            let all = try await tail.lines(count: 2)
            tail.stop()
            let messages = try all.map { try Wire.decode(Message.self, from: Array($0.utf8)) }
            #expect(first.count == 1)
            #expect(messages.map(\.content) == ["before", "live"])
            #expect(messages.map(\.seq) == [1, 2])
            await socket.close()
        }
    }

    @Test("chat: create a room, talk, see the other side, quit")
    func chat() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            let bob = try await server.register("bob")
            let chat = try Command(["chat", "--server", server.baseURL, "--token", ana.token])
            _ = try await chat.lines { $0.contains { $0.contains("logged in to") } }
            chat.type("/create ops public\n")
            let created = try await chat.lines { $0.contains { $0.hasPrefix("created #ops") } }
            let roomId = try #require(created.last { $0.hasPrefix("created #ops") }?.split(separator: " ").last?.dropLast().description)
            chat.type("hello from ana\n")
            _ = try await chat.lines { $0.contains { $0.contains("you: hello from ana") } }

            let added = try await server.request(.POST, "/api/rooms/\(roomId)/members", token: bob.token, json: ["userId": bob.user.id])
            #expect(added.status == 200)
            let bobSocket = try await server.connect(token: bob.token)
            try await bobSocket.sendMessage("hi ana", roomId: roomId)
            _ = try await chat.lines { $0.contains { $0.contains("bob: hi ana") } }
            chat.type("/quit\n")
            let status = try await chat.exitStatus()
            #expect(status == 0)
            #expect(chat.printed.contains("bye"))
            await bobSocket.close()
        }
    }

    @Test("chat, tail and send show control characters from the server escaped, never raw")
    func controlCharacters() async throws {
        let path = TestServer.temporaryDatabasePath()
        let (ana, roomId) = try await TestServer.withServer(databasePath: path) { server in
            let ana = try await server.register("ana")
            return (ana, try await server.createRoom("general", token: ana.token).id)
        }
        // Written through the store, as an older database holds them: a server that follows the protocol refuses them now.
        let hostile = "red \u{1B}[31malert\u{07} \u{202E}txt.exe \u{9B}2J \u{7F}\rover"
        let store = try await SQLiteStore.open(path: path, logger: Logger(label: "test"))
        let mallory = try await store.createUser(
            NewUser(username: "mallory", displayName: "Mal\u{1B}]0;owned\u{07}lory", passwordHash: nil, isBot: false, now: 1)
        )
        _ = try await store.addMember(roomId: roomId, userId: mallory.id, now: 1)
        _ = try await store.append(NewMessage(roomId: roomId, userId: mallory.id, content: hostile, clientId: nil, replyTo: nil, meta: nil, now: 2))
        try await store.close()

        try await TestServer.withServer(databasePath: path) { server in
            let login = ["--server", server.baseURL, "--token", ana.token]
            let tail = try Command(["tail"] + login + ["--room", "general", "--since", "0"])
            let tailed = try await tail.lines(count: 1)
            tail.stop()
            #expect(tailed.first?.contains(#"red \u{1B}[31malert\u{7} \u{202E}txt.exe \u{9B}2J \u{7F}\u{D}over"#) == true)
            #expect(rawControls(in: tail.printed).isEmpty)

            let json = try Command(["tail"] + login + ["--room", "general", "--since", "0", "--json"])
            let line = try await json.lines(count: 1)
            json.stop()
            #expect(rawControls(in: json.printed).isEmpty)
            // Still JSON, and the same text once decoded.
            #expect(try Wire.decode(Message.self, from: Array(line[0].utf8)).content == hostile)

            let sent = try await Command.run(["send"] + login + ["--room", "general", "--json", "fine"])
            #expect(sent.status == 0)
            #expect(rawControls(in: sent.output + sent.errors).isEmpty)

            let chat = try Command(["chat"] + login + ["--room", "general"])
            _ = try await chat.lines { $0.contains { $0.contains("alert") } }
            chat.type("/quit\n")
            #expect(try await chat.exitStatus() == 0)
            #expect(chat.printed.contains(#"Mal\u{1B}]0;owned\u{7}lory"#))
            #expect(rawControls(in: chat.printed).isEmpty)
        }
    }
}

/// The control characters of `text` that a terminal would act on: C0 but line feed and tab, DEL, C1, bidirectional formatting.
private func rawControls(in text: String) -> [Unicode.Scalar] {
    text.unicodeScalars.filter { scalar in
        switch scalar.value {
        case 0x0A, 0x09: false
        case 0x00...0x1F, 0x7F...0x9F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}

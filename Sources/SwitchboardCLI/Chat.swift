import ArgumentParser
import Foundation
import Logging
import SwitchboardClient
import SwitchboardProtocol
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How the client commands reach a server and log in.
struct ServerOptions: ParsableArguments {
    @Option(help: "The server's URL (env: SWITCHBOARD_SERVER).")
    var server: String = ProcessInfo.processInfo.environment["SWITCHBOARD_SERVER"] ?? "http://127.0.0.1:3001"

    @Option(name: .customLong("user"), help: "Log in as this user; the password is asked for, or read from SWITCHBOARD_PASSWORD (env: SWITCHBOARD_USER).")
    var userOption: String?

    @Option(name: .customLong("token"), help: "Log in with this token instead of a password (env: SWITCHBOARD_TOKEN).")
    var tokenOption: String?

    /// The username given, or the environment's.
    var user: String? { userOption ?? ProcessInfo.processInfo.environment["SWITCHBOARD_USER"] }
    /// The token given, or the environment's (unless a username was given on the command line).
    var token: String? { tokenOption ?? (userOption == nil ? ProcessInfo.processInfo.environment["SWITCHBOARD_TOKEN"] : nil) }

    func validate() throws {
        guard server.hasPrefix("http://") || server.hasPrefix("https://") else {
            throw ValidationError("--server must be an http:// or https:// URL, such as http://127.0.0.1:3001")
        }
        if token == nil && user == nil {
            throw ValidationError("say who you are: --user NAME (a password is asked for) or --token TOKEN")
        }
    }

    /// A token: the one given, or a session token from a password login (or a new account's).
    ///
    /// When the login is refused and a person is at the terminal, offers to create the account,
    /// since that is what a new user who has not read `--help` needs.
    func sessionToken(register: Bool = false) async throws -> String {
        if let token, !register { return token }
        guard let user else { throw ValidationError("--register needs --user") }
        let password = try readPassword(prompt: "password for \(user): ")
        do {
            if register { return try await createAccount(user, password: password) }
            do {
                return try await ChatClient.login(server: server, username: user, password: password).token
            } catch let error as ClientError where error.code == .unauthorized && isatty(STDIN_FILENO) == 1 {
                FileHandle.standardError.write(Data("no account \(user) with that password. Create the account \(user)? [y/N] ".utf8))
                guard let answer = readLine(), answer.lowercased().hasPrefix("y") else {
                    throw Failure(description: "wrong username or password")
                }
                return try await createAccount(user, password: password)
            }
        } catch let error as ClientError {
            switch error.code {
            case .unauthorized: throw Failure(description: "wrong username or password (new here? add --register)")
            case .unreachable: throw Failure(description: "cannot reach \(server): is `switchboard serve` running?")
            default: throw Failure(description: TerminalText.printable(error.message))
            }
        }
    }

    private func createAccount(_ user: String, password: String) async throws -> String {
        let confirmation = try readPassword(prompt: "the same password again: ")
        guard confirmation == password else { throw Failure(description: "the passwords differ") }
        do {
            let answer = try await ChatClient.register(server: server, username: user, password: password)
            FileHandle.standardError.write(Data("created the account \(TerminalText.printable(answer.user.username))\n".utf8))
            return answer.token
        } catch let error as ClientError where error.protocolError?.code == .conflict {
            throw Failure(description: "the name \(user) is taken (and that is not its password)")
        } catch let error as ClientError where error.code == .forbidden {
            throw Failure(description: "this server does not let people register; ask its administrator for an account")
        }
    }

    /// Runs `body`, turning the errors a person meets first into sentences.
    func explained<Value>(_ body: () async throws -> Value) async throws -> Value {
        do {
            return try await body()
        } catch let error as ClientError {
            switch error.code {
            case .unauthorized: throw Failure(description: "the server refused the token: it is unknown, revoked or expired")
            case .unreachable: throw Failure(description: "cannot reach \(server): is `switchboard serve` running?")
            default: throw Failure(description: TerminalText.printable(error.message))
            }
        }
    }

    /// A client configuration for commands: the defaults, logging in with `token`.
    func configuration(token: String) -> ClientConfiguration {
        ClientConfiguration(server: server, credentials: .token(token))
    }
}

/// Reads a password from the terminal without echoing it, or a line from standard input when it is not a terminal.
func readPassword(prompt: String) throws -> String {
    if let password = ProcessInfo.processInfo.environment["SWITCHBOARD_PASSWORD"] { return password }
    guard isatty(STDIN_FILENO) == 1 else {
        guard let line = readLine(strippingNewline: true) else { throw Failure(description: "no password on standard input") }
        return line
    }
    FileHandle.standardError.write(Data(prompt.utf8))
    var saved = termios()
    tcgetattr(STDIN_FILENO, &saved)
    var silent = saved
    silent.c_lflag &= ~tcflag_t(ECHO)
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent)
    defer {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
        FileHandle.standardError.write(Data("\n".utf8))
    }
    guard let line = readLine(strippingNewline: true) else { throw Failure(description: "no password given") }
    return line
}

/// A logger for the client commands: quiet (errors only) unless `LOG_LEVEL` or `DEBUG` asks for more,
/// so that log lines do not mix with the conversation.
func clientLogger() -> Logger {
    var logger = makeLogger(label: "switchboard.client")
    if ProcessInfo.processInfo.environment["LOG_LEVEL"] == nil && !debugsWebSocket { logger.logLevel = .error }
    return logger
}

/// A room named by id or by name, among the user's rooms; else taken as an id (a public room, say).
func resolveRoom(_ nameOrId: String, client: ChatClient) async throws -> String {
    let rooms = try await client.rooms()
    if let room = rooms.first(where: { $0.room.id == nameOrId }) ?? rooms.first(where: { $0.room.name.lowercased() == nameOrId.lowercased() }) {
        return room.room.id
    }
    return nameOrId
}

/// `hh:mm` of a server time.
func clock(_ milliseconds: Int) -> String {
    let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    let components = Calendar.current.dateComponents([.hour, .minute], from: date)
    return String(format: "%02d:%02d", components.hour ?? 0, components.minute ?? 0)
}

/// Runs `body`, failing with a message when it takes longer than `seconds`.
func within<Value: Sendable>(seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> Value) async throws -> Value {
    try await withThrowingTaskGroup(of: Value?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let value = try await group.next() ?? nil else {
            throw Failure(description: "\(what) did not finish within \(Int(seconds)) seconds")
        }
        return value
    }
}

// MARK: switchboard send

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one message, for scripts.",
        discussion: """
            Waits until the server has stored the message, then prints it. Sending again with the same --client-id stores nothing new.

              switchboard send --token $TOKEN --room general 'deploy done'
              echo 'from a pipe' | switchboard send --token $TOKEN --room general -
            """
    )

    @OptionGroup var connection: ServerOptions
    @Option(help: "The room: its name or id.") var room: String
    @Option(help: "An idempotency key: the same one twice stores one message.") var clientId: String?
    @Option(help: "Give up after this many seconds; the error says whether the message may still be stored.") var timeout: Double = 30
    @Flag(help: "Print the stored message as JSON.") var json = false
    @Argument(help: "The text; '-' reads standard input.") var text: [String] = []

    func validate() throws {
        // A number from outside: in range before it becomes a Duration.
        guard (0.001...86_400).contains(timeout) else { throw ValidationError("--timeout must be 0.001 to 86400 seconds, not \(timeout)") }
    }

    func run() async throws {
        var typed = text.joined(separator: " ")
        if typed == "-" || typed.isEmpty {
            typed = AnyIterator { readLine(strippingNewline: false) }.joined()
        }
        let token = try await connection.sessionToken()
        let logger = clientLogger()
        let content = typed
        // Always one, so that a message whose fate is unknown can be sent again safely.
        let clientId = self.clientId ?? UUID().uuidString.lowercased()
        var configuration = connection.configuration(token: token)
        configuration.deliveryTimeout = .seconds(timeout)
        // What is still queued when the command gives up is not sent behind its back.
        configuration.shutdownFlushTimeout = .zero
        let message = try await ChatClient.withClient(configuration: configuration, logger: logger) { client in
            let roomId = try await within(seconds: timeout, "reaching \(connection.server)") {
                try await connection.explained { try await resolveRoom(room, client: client) }
            }
            do {
                return try await client.send(content, to: roomId, clientId: clientId)
            } catch let error as ClientError where error.code == .timeout {
                if client.withdraw(clientId) {
                    throw Failure(description: "not sent to \(room) within \(Int(timeout)) seconds; it was never sent and will not be stored")
                }
                throw Failure(
                    description: """
                        no answer from \(room) within \(Int(timeout)) seconds: the message was sent and may still be stored. \
                        Sending it again with --client-id \(clientId) stores it at most once.
                        """
                )
            } catch let error as ClientError {
                throw Failure(description: "cannot send to \(room): \(TerminalText.printable(error.message))")
            }
        }
        if json {
            output(TerminalText.printableJSON(try Wire.encodeString(message)))
        } else {
            output("sent #\(message.seq) to \(TerminalText.printable(room)) (id \(TerminalText.printable(message.id)))")
        }
    }
}

// MARK: switchboard tail

struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a room's messages as they come, for scripts.",
        discussion: """
            Every message once, in order, across reconnections. With --since, first those after that seq.

              switchboard tail --token $TOKEN --room general --since 0 --json | jq .content
            """
    )

    @OptionGroup var connection: ServerOptions
    @Option(help: "The room: its name or id.") var room: String
    @Option(help: "Start after this seq (0: from the first message); default: from now.") var since: Int?
    @Flag(help: "Print one JSON message per line.") var json = false

    func run() async throws {
        let token = try await connection.sessionToken()
        try await ChatClient.withClient(configuration: connection.configuration(token: token), logger: clientLogger()) { client in
            let roomId = try await connection.explained { try await resolveRoom(room, client: client) }
            let statuses = client.statusUpdates()
            let names = NameBook(client: client)
            let messages: AsyncStream<Message>
            do {
                messages = try await client.subscribe(to: roomId, after: since).messages
            } catch let error as ClientError {
                throw Failure(description: "cannot follow \(room): \(TerminalText.printable(error.message))")
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await status in statuses {
                        if case .failed(let reason) = status { throw Failure(description: "stopped: \(TerminalText.printable(reason.message))") }
                        if !json { FileHandle.standardError.write(Data("* \(status)\n".utf8)) }
                    }
                }
                for await message in messages {
                    if json {
                        output(TerminalText.printableJSON(try Wire.encodeString(message)))
                    } else {
                        output(TerminalText.printable("#\(message.seq) [\(clock(message.createdAt))] \(await names.name(of: message.userId)): \(message.content)", indentingLines: true))
                    }
                }
                group.cancelAll()
                try await group.waitForAll()
            }
        }
    }
}

/// Display names by user id, learnt from the server as needed.
actor NameBook {
    private let client: ChatClient
    private var names: [String: String] = [:]
    private var askedFor: Set<String> = []
    private var loading: Task<Void, Never>?

    init(client: ChatClient) {
        self.client = client
    }

    func learn(_ user: User) {
        names[user.id] = user.displayName == user.username ? user.username : "\(user.displayName) (\(user.username))"
    }

    func name(of userId: String) async -> String {
        if let name = names[userId] { return name }
        if !askedFor.contains(userId) {
            askedFor.insert(userId)
            await refresh()
        } else if let loading {
            // Another caller is asking already (an actor call may interleave at an await): wait for its answer.
            await loading.value
        }
        return names[userId] ?? userId
    }

    /// Asks the server for everyone it lists (up to 50): the API finds users by name, not by id.
    func refresh() async {
        if let loading { return await loading.value }
        let client = self.client
        let task = Task { (try? await client.users(matching: "")) ?? [] }
        loading = Task { _ = await task.value }
        for user in await task.value { learn(user) }
        loading = nil
    }

    /// A user by username, exactly, without regard to case.
    func user(named username: String) async throws -> User? {
        let users = try await client.users(matching: username)
        for user in users { learn(user) }
        return users.first { $0.username.lowercased() == username.lowercased() }
    }
}

// MARK: switchboard chat

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat in a terminal.",
        discussion: """
            Log in, pick a room, and type. Lines starting with / are commands (/help lists them).

              switchboard chat --user ana --register        # the first time: make an account
              switchboard chat --user ana --room general
            """
    )

    @OptionGroup var connection: ServerOptions
    @Option(help: "The room to open first: its name or id.") var room: String?
    @Flag(help: "Create the account first (asks for a password twice).") var register = false

    func run() async throws {
        let token = try await connection.sessionToken(register: register)
        try await ChatClient.withClient(configuration: connection.configuration(token: token), logger: clientLogger()) { client in
            let session = ChatSession(client: client, server: connection.server)
            try await session.run(firstRoom: room)
        }
    }
}

/// One person's terminal conversation: prints what happens, and turns typed lines into messages and commands.
actor ChatSession {
    private let client: ChatClient
    private let server: String
    private let names: NameBook
    private var me: User?
    /// The room typed lines go to.
    private var current: Room?
    /// How each room is shown: `#general`, `@bob`.
    private var titles: [String: String] = [:]
    /// Recent messages of each room, newest last, for `/react`.
    private var recent: [String: [Message]] = [:]
    private var lastTyping: [String: ContinuousClock.Instant] = [:]

    init(client: ChatClient, server: String) {
        self.client = client
        self.server = server
        self.names = NameBook(client: client)
    }

    func run(firstRoom: String?) async throws {
        let me: User
        do {
            me = try await within(seconds: 15, "logging in") { try await self.client.me() }
        } catch let error as ClientError where error.code == .unauthorized {
            throw Failure(description: "the server refused the token")
        } catch let error as ClientError where error.code == .unreachable {
            throw Failure(description: "cannot reach \(server): is `switchboard serve` running?")
        }
        self.me = me
        await names.learn(me)
        await names.refresh()
        say("logged in to \(server) as \(me.username). /help lists the commands, /quit leaves.")
        // Follow every room, as a chat client does: what comes elsewhere is shown with its room's name,
        // rooms that appear later are followed too, and the client recovers all of them after a reconnection.
        let events = client.followAllRooms()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in events { await self.show(event) }
            }
            let rooms = try await listRooms(hint: firstRoom == nil)
            if let firstRoom {
                await open(firstRoom)
            } else if rooms > 0 {
                say("/join ROOM to enter a room, /create NAME to make one, /dm USER to talk to someone.")
            }
            for await line in standardInputLines() {
                if await !handle(line) { break }
            }
            group.cancelAll()
        }
        let report = await client.disconnect()
        if !report.isClean { say("\(report.unsent.count) messages could not be sent") }
        say("bye")
    }

    // MARK: Input

    /// Handles a typed line; false to quit.
    private func handle(_ line: String) async -> Bool {
        let text = line.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return true }
        guard text.hasPrefix("/") else {
            // The message is printed when the server has it; erase the typed line so it does not show twice.
            if isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 && current != nil { output("\u{1B}[1A\u{1B}[2K", newline: false) }
            await sendText(text)
            return true
        }
        let parts = text.dropFirst().split(separator: " ", maxSplits: 1).map(String.init)
        let command = parts[0].lowercased()
        let argument = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
        switch command {
        case "quit", "exit", "q":
            return false
        case "help", "h", "?":
            say("""
                commands:
                  /rooms              your rooms, with unread counts
                  /join ROOM          open a room (a name from /rooms, or a public room's id)
                  /create NAME        make a room and open it (/create NAME public: anyone may join)
                  /dm USER            talk to USER alone
                  /react EMOJI [N]    react to the last message (or the Nth from last)
                  /who                who is in this room
                  /me TEXT            send an action (* you TEXT)
                  /status             the connection's status
                  /quit               leave
                anything else is sent to the open room.
                """)
        case "rooms", "list":
            _ = try? await listRooms()
        case "join", "j", "open":
            if argument.isEmpty { say("which room? /join ROOM (see /rooms)") } else { await open(argument) }
        case "create":
            await create(argument)
        case "dm", "msg":
            await directMessage(argument)
        case "react":
            await react(argument)
        case "who":
            await who()
        case "me":
            if !argument.isEmpty { await sendText("* \(me?.username ?? "") \(argument)") }
        case "status":
            say("status: \(client.status); outbox: \(client.pendingMessages.count) waiting")
        default:
            say("unknown command /\(command); /help lists them")
        }
        return true
    }

    private func sendText(_ text: String) async {
        guard let room = current else {
            say("no room is open: /join ROOM first (see /rooms)")
            return
        }
        do {
            // The client queues it when offline; tell the person rather than leave them wondering.
            if !client.status.isOnline { say("(offline: the message is queued and will be sent when the connection is back)") }
            _ = try client.enqueue(text, to: room.id)
        } catch let error as ClientError {
            say("not sent: \(error.message)")
        } catch {
            say("not sent: \(error)")
        }
    }

    /// Lists the user's rooms; returns how many there are.
    @discardableResult
    private func listRooms(hint: Bool = true) async throws -> Int {
        let rooms = try await client.rooms()
        for summary in rooms {
            titles[summary.room.id] = await title(of: summary.room)
        }
        guard !rooms.isEmpty else {
            if hint { say("you are in no room yet: /create NAME to make one, /dm USER to talk to someone, or /join ID for a public room") }
            return 0
        }
        var lines = ["your rooms:"]
        for summary in rooms {
            let name = await title(of: summary.room)
            let unread = summary.unread > 0 ? "  (\(summary.unread) unread)" : ""
            let marker = summary.room.id == current?.id ? "*" : " "
            lines.append(" \(marker) \(name)\(unread)")
        }
        say(lines.joined(separator: "\n"))
        return rooms.count
    }

    /// A room's name as shown: `#general`, or `@bob` for a direct room.
    private func title(of room: Room) async -> String {
        if room.kind == .direct, let other = room.members.first(where: { $0 != me?.id }) {
            return "@" + (await names.name(of: other))
        }
        return "#" + room.name
    }

    private func open(_ nameOrId: String) async {
        let name = nameOrId.hasPrefix("#") ? String(nameOrId.dropFirst()) : nameOrId
        do {
            let roomId = try await resolveRoom(name, client: client)
            await enter(roomId)
        } catch let error as ClientError {
            say("cannot open \(nameOrId): \(error.message)")
        } catch {
            say("cannot open \(nameOrId): \(error)")
        }
    }

    /// Shows a room's recent history, then follows it live from there: no gap, no repeat.
    private func enter(_ roomId: String) async {
        do {
            let page = try await client.history(in: roomId, limit: 20)
            let room = try await client.subscribe(to: roomId, after: client.lastSeq(in: roomId) ?? page.messages.last?.seq ?? 0).room
            titles[room.id] = await title(of: room)
            current = room
            let header = await title(of: room)
            say("── \(header) ── \(room.members.count) member\(room.members.count == 1 ? "" : "s")\(page.hasMore ? ", earlier messages not shown" : "")")
            for message in page.messages { await print(message) }
            if recent[roomId] == nil { recent[roomId] = page.messages }
        } catch let error as ClientError where error.code == .forbidden {
            say("you may not open that room: it is private and you are not a member")
        } catch let error as ClientError where error.code == .notFound {
            say("no such room among yours (/rooms lists them); a public room you are not in yet is opened by its id, which its members can give you")
        } catch {
            say("cannot open the room: \(error)")
        }
    }

    private func create(_ argument: String) async {
        var words = argument.split(separator: " ").map(String.init)
        let isPublic = words.last?.lowercased() == "public"
        if isPublic { words.removeLast() }
        let name = words.joined(separator: " ")
        guard !name.isEmpty else {
            say("/create NAME [public]")
            return
        }
        do {
            let room = try await client.createRoom(named: name, isPublic: isPublic)
            say("created #\(room.name)\(isPublic ? " (public: share its id \(room.id))" : "")")
            await enter(room.id)
        } catch {
            say("cannot create it: \(explain(error))")
        }
    }

    private func directMessage(_ username: String) async {
        let username = username.hasPrefix("@") ? String(username.dropFirst()) : username
        guard !username.isEmpty else {
            say("/dm USER")
            return
        }
        do {
            guard let user = try await names.user(named: username) else {
                say("no user named \(username)")
                return
            }
            guard user.id != me?.id else {
                say("that is you")
                return
            }
            let room = try await client.directRoom(with: user.id)
            await enter(room.id)
        } catch {
            say("cannot open a conversation with \(username): \(explain(error))")
        }
    }

    private func react(_ argument: String) async {
        let parts = argument.split(separator: " ").map(String.init)
        guard let room = current, let emoji = parts.first else {
            say(current == nil ? "no room is open" : "/react EMOJI [N]")
            return
        }
        let back = parts.count > 1 ? Int(parts[1]) ?? 1 : 1
        let messages = recent[room.id] ?? []
        guard back >= 1, back <= messages.count else {
            say("there is no message \(back) back")
            return
        }
        let target = messages[messages.count - back]
        do {
            try await client.react(emoji, to: target.id, in: room.id)
        } catch {
            say("cannot react: \(explain(error))")
        }
    }

    private func who() async {
        guard let room = current else {
            say("no room is open")
            return
        }
        do {
            let fresh = try await client.room(room.id)
            var names: [String] = []
            for member in fresh.members { names.append(await self.names.name(of: member)) }
            say("in \(await title(of: fresh)): \(names.sorted().joined(separator: ", "))")
        } catch {
            say("cannot list the members: \(explain(error))")
        }
    }

    // MARK: Output

    private func show(_ event: ClientEvent) async {
        switch event {
        case .message(let message):
            var messages = recent[message.roomId] ?? []
            messages.append(message)
            recent[message.roomId] = Array(messages.suffix(50))
            lastTyping[message.userId] = nil
            await print(message)
        case .typing(let typing):
            guard typing.isTyping, typing.roomId == current?.id else { return }
            // Say it once per burst of typing, not at every indicator.
            if let last = lastTyping[typing.userId], ContinuousClock.now - last < .seconds(10) { return }
            lastTyping[typing.userId] = .now
            say("  \(await names.name(of: typing.userId)) is typing…")
        case .reaction(let reaction):
            guard reaction.action == .add else { return }
            let counts = reaction.reactions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "  ")
            say("  \(await names.name(of: reaction.userId)) reacted \(reaction.reaction)  [\(counts)]\(await roomSuffix(reaction.roomId))")
        case .presence(let presence):
            say("  \(await names.name(of: presence.userId)) is \(presence.status == .online ? "online" : "offline")")
        case .memberJoined(let roomId, let user):
            await names.learn(user)
            if roomId == current?.id { say("  \(user.username) joined") }
        case .memberLeft(let roomId, let user):
            if roomId == current?.id { say("  \(user.username) left") }
        case .room(let data):
            // A room new to this session (one just made with this user in it, a first direct message): the
            // client follows it from now on by itself.
            let title = await title(of: data.room)
            let isNew = titles[data.room.id] == nil
            titles[data.room.id] = title
            if isNew, let message = data.lastMessage, message.userId != me?.id { say("  you are in \(title) now\(data.room.kind == .group ? " (/join \(data.room.name))" : " (/dm \(title.dropFirst()))")") }
        case .member(let change):
            await names.learn(change.user)
            if change.roomId == current?.id { say("  \(change.user.username) was \(change.change == .added ? "added" : "removed")") }
        case .caughtUp, .ready:
            break
        case .status(let status):
            switch status {
            case .connected: say("* connected")
            case .polling: say("* connected (long polling: the WebSocket is blocked on this network)")
            case .reconnecting(let attempt, let delay):
                if attempt == 1 || attempt % 5 == 0 {
                    let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
                    say("* connection lost; reconnecting (attempt \(attempt), next in \(String(format: "%.1f", seconds))s)")
                }
            case .failed(let reason): say("* disconnected for good: \(reason.message). /quit and log in again.")
            case .connecting, .disconnected: break
            }
        case .messageRejected(let pending, let error):
            say("! not sent (\(error.message)): \(pending.content)")
        case .gap(let roomId, let seqs):
            say("! messages \(seqs.lowerBound)–\(seqs.upperBound)\(await roomSuffix(roomId)) could not be recovered")
        case .subscriptionEnded(let roomId, let error):
            say("! no longer following\(await roomSuffix(roomId)): \(error.message)")
        case .messageSent, .unknown:
            break
        }
    }

    private func print(_ message: Message) async {
        let name = await names.name(of: message.userId)
        let mine = message.userId == me?.id
        say("[\(clock(message.createdAt))] \(mine ? "you" : name): \(message.content)\(await roomSuffix(message.roomId))", indentingLines: true)
    }

    /// ` (in #room)` for a room other than the open one.
    private func roomSuffix(_ roomId: String) async -> String {
        guard roomId != current?.id else { return "" }
        return "  (in \(titles[roomId] ?? roomId))"
    }

    /// Prints a line; any control character in it (from the server: names, messages, errors) shows escaped.
    private func say(_ text: String, indentingLines: Bool = false) {
        output(TerminalText.printable(text, indentingLines: indentingLines))
    }
}

/// Writes a line to standard output at once (not buffered: another process may be reading it live).
func output(_ line: String, newline: Bool = true) {
    FileHandle.standardOutput.write(Data((newline ? line + "\n" : line).utf8))
}

/// Lines typed on standard input, read on a thread of their own (reading blocks).
func standardInputLines() -> AsyncStream<String> {
    let (stream, continuation) = AsyncStream.makeStream(of: String.self)
    let thread = Thread {
        while let line = readLine(strippingNewline: true) { continuation.yield(line) }
        continuation.finish()
    }
    thread.start()
    return stream
}

private func explain(_ error: any Error) -> String {
    if let error = error as? ClientError { return error.message }
    return "\(error)"
}

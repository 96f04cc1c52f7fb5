import Testing

@testable import IRCBridge

/// Drives an `IRCSession` with server lines written as text.
private struct Script {
    var session: IRCSession
    var now: Duration = .zero

    init(_ configuration: IRCSessionConfiguration) {
        session = IRCSession(configuration)
    }

    mutating func start() -> [String] { Self.sent(session.start(at: now)) }

    mutating func receive(_ line: String) -> [IRCSession.Action] {
        session.receive(try! IRCMessage(parsing: line), at: now)
    }

    mutating func sent(after line: String) -> [String] { Self.sent(receive(line)) }

    mutating func tick(after elapsed: Duration) -> [IRCSession.Action] {
        now += elapsed
        return session.tick(at: now)
    }

    static func sent(_ actions: [IRCSession.Action]) -> [String] {
        actions.compactMap { if case .send(let message) = $0 { message.line } else { nil } }
    }
}

@Suite("IRC session")
struct IRCSessionTests {
    @Test func registersWithoutIRCv3() {
        var script = Script(IRCSessionConfiguration(nick: "relay", serverPassword: "pw", channels: [IRCChannel("#a"), IRCChannel("#b", key: "k")]))
        #expect(script.start() == ["CAP LS 302", "PASS pw", "NICK relay", "USER switchboard 0 * :Switchboard bridge"])
        // ngircd offers only multi-prefix.
        #expect(script.sent(after: ":irc.test.local CAP * LS :multi-prefix") == ["CAP REQ multi-prefix"])
        #expect(script.sent(after: ":irc.test.local CAP relay ACK :multi-prefix") == ["CAP END"])
        let actions = script.receive(":irc.test.local 001 relay :Welcome")
        #expect(actions.first == .registered(nick: "relay"))
        #expect(Script.sent(actions) == ["JOIN #a", "JOIN #b k"])
        #expect(script.receive(":relay!u@h JOIN #a") == [.joined("#a")])
        #expect(script.session.isJoined("#A"))
    }

    @Test func registersWhenTheServerDoesNotKnowCAP() {
        var script = Script(IRCSessionConfiguration(nick: "relay"))
        _ = script.start()
        #expect(script.sent(after: ":old.server 421 * CAP :Unknown command") == [])
        #expect(script.receive(":old.server 001 relay :Welcome") == [.registered(nick: "relay")])
    }

    @Test func negotiatesMultiLineCapabilityListsAndSASL() {
        var script = Script(IRCSessionConfiguration(nick: "relay", sasl: SASLCredentials(account: "acct", password: "secret")))
        _ = script.start()
        #expect(script.sent(after: ":s CAP * LS * :message-tags server-time sasl=PLAIN,EXTERNAL") == [])
        #expect(script.sent(after: ":s CAP * LS :echo-message batch account-notify") == ["CAP REQ :message-tags server-time echo-message batch sasl"])
        #expect(script.sent(after: ":s CAP * ACK :message-tags server-time echo-message batch sasl") == ["AUTHENTICATE PLAIN"])
        #expect(script.session.capabilities == ["message-tags", "server-time", "echo-message", "batch", "sasl"])
        // base64("acct\0acct\0secret")
        #expect(script.sent(after: "AUTHENTICATE +") == ["AUTHENTICATE YWNjdABhY2N0AHNlY3JldA=="])
        #expect(script.sent(after: ":s 900 relay relay!u@h acct :You are now logged in") == [])
        #expect(script.sent(after: ":s 903 relay :SASL authentication successful") == ["CAP END"])
    }

    @Test func continuesWhenSASLIsRefused() {
        var script = Script(IRCSessionConfiguration(nick: "relay", sasl: SASLCredentials(account: "a", password: "b")))
        _ = script.start()
        _ = script.receive(":s CAP * LS :sasl")
        _ = script.receive(":s CAP * ACK :sasl")
        _ = script.receive("AUTHENTICATE +")
        let actions = script.receive(":s 904 relay :SASL authentication failed")
        #expect(actions.contains { if case .warning = $0 { true } else { false } })
        #expect(Script.sent(actions) == ["CAP END"])
    }

    @Test func longSASLPayloadsAreChunked() {
        let credentials = SASLCredentials(account: "a", password: String(repeating: "p", count: 296))  // 300 bytes → 400 base64
        #expect(credentials.authenticateLines.count == 2)
        #expect(credentials.authenticateLines[0].count == 400)
        #expect(credentials.authenticateLines[1] == "+")
    }

    @Test func takenNickTriesAlternatesThenANumber() {
        var script = Script(IRCSessionConfiguration(nick: "relay", alternateNicks: ["relay_"]))
        _ = script.start()
        #expect(script.sent(after: ":s 433 * relay :Nickname is already in use") == ["NICK relay_"])
        #expect(script.sent(after: ":s 433 * relay_ :Nickname is already in use") == ["NICK relay1"])
        #expect(script.sent(after: ":s 433 * relay1 :Nickname is already in use") == ["NICK relay2"])
        #expect(script.receive(":s 001 relay2 :Welcome") == [.registered(nick: "relay2")])
        #expect(script.session.nick == "relay2")
        // The holder of our nick leaves: take it back at once.
        #expect(Script.sent(script.receive(":relay!x@y QUIT :bye")) == ["NICK relay"])
        _ = script.receive(":relay2!u@h NICK :relay")
        #expect(script.session.nick == "relay")
    }

    @Test func nickRecoveryIsTriedPeriodically() {
        var script = Script(IRCSessionConfiguration(nick: "relay", nickRecoveryInterval: .seconds(30)))
        _ = script.start()
        _ = script.receive(":s 433 * relay :in use")
        _ = script.receive(":s 001 relay1 :Welcome")
        #expect(Script.sent(script.tick(after: .seconds(10))) == [])
        #expect(Script.sent(script.tick(after: .seconds(25))) == ["NICK relay"])
        #expect(Script.sent(script.receive(":s 433 relay1 relay :in use")) == [])
    }

    @Test func erroneousLongNicksAreShortened() {
        var script = Script(IRCSessionConfiguration(nick: "switchboardbridge"))
        _ = script.start()
        #expect(script.sent(after: ":s 432 * switchboardbridge :Erroneous nickname") == ["NICK switchbo1"])
    }

    @Test func aBareEqualsSignInTheServerListsIsSkipped() {
        // A token that is only "=" once trapped on `parts[0]` and brought the whole agent down.
        var script = Script(IRCSessionConfiguration(nick: "relay"))
        _ = script.start()
        #expect(script.sent(after: ":s CAP * LS := multi-prefix =x") == ["CAP REQ multi-prefix"])
        _ = script.receive(":s CAP relay ACK :multi-prefix")
        _ = script.receive(":s 001 relay :Welcome")
        #expect(script.receive(":s 005 relay = NICKLEN=12 =x :are supported by this server") == [])
        #expect(script.session.serverSupport == ["NICKLEN": "12"])
    }

    @Test func answersPingsAndTimesOutASilentServer() {
        var script = Script(IRCSessionConfiguration(nick: "relay", pingInterval: .seconds(60), pingTimeout: .seconds(20)))
        _ = script.start()
        _ = script.receive(":s 001 relay :Welcome")
        #expect(script.sent(after: "PING :abc def") == ["PONG :abc def"])
        #expect(Script.sent(script.tick(after: .seconds(59))) == [])
        #expect(Script.sent(script.tick(after: .seconds(1))) == ["PING switchboard"])
        _ = script.tick(after: .seconds(5))
        _ = script.receive(":s PONG s :switchboard")
        #expect(script.session.lag == .seconds(5))
        #expect(Script.sent(script.tick(after: .seconds(60))) == ["PING switchboard"])
        let actions = script.tick(after: .seconds(20))
        #expect(actions.count == 1)
        if case .close(let reason) = actions.first { #expect(reason.contains("PONG")) } else { Issue.record("expected a close, got \(actions)") }
    }

    @Test func registrationThatNeverFinishesIsGivenUp() {
        var script = Script(IRCSessionConfiguration(nick: "relay", pingInterval: .seconds(10), pingTimeout: .seconds(10)))
        _ = script.start()
        #expect(script.tick(after: .seconds(19)).isEmpty)
        #expect(script.tick(after: .seconds(1)).count == 1)
    }

    @Test func identifiesToNickServAndRejoinsWithKeysAfterAKick() {
        var script = Script(IRCSessionConfiguration(nick: "relay", nickServPassword: "pw", channels: [IRCChannel("#k", key: "sesame")]))
        _ = script.start()
        #expect(Script.sent(script.receive(":s 001 relay :Welcome")) == ["PRIVMSG NickServ :IDENTIFY pw", "JOIN #k sesame"])
        _ = script.receive(":relay!u@h JOIN #k")
        let actions = script.receive(":op!o@h KICK #k relay :out")
        #expect(actions.contains(.left("#k")))
        #expect(Script.sent(actions) == ["JOIN #k sesame"])
        #expect(!script.session.isJoined("#k"))
    }

    @Test func aChannelThatRefusesUsIsTriedAgainWithGrowingWaits() {
        var script = Script(IRCSessionConfiguration(nick: "relay", channels: [IRCChannel("#k", key: "sesame")], rejoinDelay: .seconds(10), maxRejoinDelay: .seconds(25)))
        _ = script.start()
        _ = script.receive(":s 001 relay :Welcome")
        let actions = script.receive(":s 474 relay #K :Cannot join channel (+b)")
        #expect(actions.contains(.cannotJoin("#K")))
        #expect(script.session.cannotJoin("#k"))
        #expect(Script.sent(script.tick(after: .seconds(9))) == [])
        #expect(Script.sent(script.tick(after: .seconds(1))) == ["JOIN #K sesame"])
        // Refused again: twice the wait, then no more than the longest.
        _ = script.receive(":s 474 relay #K :Cannot join channel (+b)")
        #expect(Script.sent(script.tick(after: .seconds(19))) == [])
        #expect(Script.sent(script.tick(after: .seconds(1))) == ["JOIN #K sesame"])
        _ = script.receive(":s 473 relay #K :Cannot join channel (+i)")
        #expect(Script.sent(script.tick(after: .seconds(24))) == [])
        #expect(Script.sent(script.tick(after: .seconds(1))) == ["JOIN #K sesame"])
        // In at last: no more tries.
        #expect(script.receive(":relay!u@h JOIN #k") == [.joined("#k")])
        #expect(!script.session.cannotJoin("#k"))
        #expect(!Script.sent(script.tick(after: .seconds(100))).contains { $0.hasPrefix("JOIN") })
    }

    @Test func reportsMessagesActionsEchoesAndMembers() {
        var script = Script(IRCSessionConfiguration(nick: "relay", channels: [IRCChannel("#c")]))
        _ = script.start()
        _ = script.receive(":s 001 relay :Welcome")
        _ = script.receive(":relay!u@h JOIN #c")
        _ = script.receive(":s 353 relay = #c :@+ann bob relay")
        #expect(script.receive("@time=2026-11-30T12:00:00Z :ann!a@h PRIVMSG #c :\u{01}ACTION waves\u{01}") == [
            .event(.message(IRCChatMessage(channel: "#c", nick: "ann", text: "waves", isAction: true, isNotice: false, isEcho: false, time: "2026-11-30T12:00:00Z")))
        ])
        #expect(script.receive(":relay!u@h PRIVMSG #c :mine") == [
            .event(.message(IRCChatMessage(channel: "#c", nick: "relay", text: "mine", isAction: false, isNotice: false, isEcho: true, time: nil)))
        ])
        #expect(script.receive(":ann!a@h QUIT :gone") == [.event(.quit(nick: "ann", reason: "gone", channels: ["#c"]))])
        #expect(script.receive(":bob!b@h NICK bobby") == [.event(.nickChange(from: "bob", to: "bobby", channels: ["#c"]))])
        // Answers wait for flood control, like the lines relayed.
        #expect(script.receive(":bob!b@h PRIVMSG relay :\u{01}VERSION\u{01}") == [.reply(IRCMessage(command: "NOTICE", parameters: ["bob", "\u{01}VERSION Switchboard IRC bridge\u{01}"]))])
        #expect(script.receive(":s 404 relay #c :Cannot send to channel") == [.event(.refused(channel: "#c", reason: "Cannot send to channel"))])
    }

    @Test func startForgetsThePreviousConnection() {
        var script = Script(IRCSessionConfiguration(nick: "relay", channels: [IRCChannel("#c")]))
        _ = script.start()
        _ = script.receive(":s 001 relay :Welcome")
        _ = script.receive(":relay!u@h JOIN #c")
        #expect(script.session.isJoined("#c"))
        _ = script.start()
        #expect(!script.session.isJoined("#c"))
        #expect(script.session.phase == .registering)
    }

    @Test func foldsCaseTheIRCWay() {
        #expect(IRCCase.equal("Relay[1]", "relay{1}"))
        #expect(IRCCase.fold("A\\B~") == "a|b^")
    }
}

import Testing

@testable import IRCBridge

@Suite("The puppet pool")
struct PuppetPoolTests {
    @Test func offMeansTheRelayNick() {
        var pool = PuppetPool(PuppetOptions())
        #expect(pool.speak(userId: "u1", name: "ann", at: .zero) == .relay)
        #expect(pool.count == 0)
    }

    @Test func startsReusesAndFallsBackAtTheLimit() {
        var pool = PuppetPool(PuppetOptions(enabled: true, limit: 2))
        #expect(pool.speak(userId: "u1", name: "ann", at: .zero) == .start(nick: "ann[m]"))
        #expect(pool.speak(userId: "u1", name: "ann", at: .seconds(1)) == .use(nick: "ann[m]"))
        #expect(pool.speak(userId: "u2", name: "bob", at: .seconds(2)) == .start(nick: "bob[m]"))
        #expect(pool.speak(userId: "u3", name: "cy", at: .seconds(3)) == .relay)
        #expect(pool.count == 2)
        #expect(Set(pool.nicks) == ["ann[m]", "bob[m]"])
    }

    @Test func idlePuppetsLeaveAndFreeTheirPlace() {
        var pool = PuppetPool(PuppetOptions(enabled: true, limit: 1, idleTimeout: .seconds(60)))
        _ = pool.speak(userId: "u1", name: "ann", at: .zero)
        #expect(pool.idle(at: .seconds(59)) == [])
        // Lines still waiting count as speaking.
        pool.touch(userId: "u1", at: .seconds(30))
        #expect(pool.idle(at: .seconds(89)) == [])
        #expect(pool.idle(at: .seconds(90)) == ["u1"])
        #expect(pool.count == 0)
        #expect(pool.speak(userId: "u2", name: "bob", at: .seconds(91)) == .start(nick: "bob[m]"))
        // Back after leaving: a new puppet.
        #expect(pool.speak(userId: "u1", name: "ann", at: .seconds(92)) == .relay)
        pool.remove(userId: "u2")
        #expect(pool.speak(userId: "u1", name: "ann", at: .seconds(93)) == .start(nick: "ann[m]"))
    }

    @Test func nicksFollowIRCRulesAndNeverCollide() {
        var pool = PuppetPool(PuppetOptions(enabled: true, limit: 10, suffix: "[m]", maxNickLength: 12))
        #expect(pool.speak(userId: "1", name: "Ann Smith", at: .zero) == .start(nick: "AnnSmith[m]"))
        #expect(pool.speak(userId: "2", name: "9lives", at: .zero) == .start(nick: "_9lives[m]"))
        #expect(pool.speak(userId: "3", name: "Zoë", at: .zero) == .start(nick: "Zo[m]"))
        #expect(pool.speak(userId: "4", name: "日本", at: .zero) == .start(nick: "_[m]"))
        #expect(pool.speak(userId: "5", name: "averyveryverylongname", at: .zero) == .start(nick: "averyvery[m]"))
        // IRC folds case (and [ ] with { }): a second "ann" gets a number, within the length.
        #expect(pool.speak(userId: "6", name: "annsmith", at: .zero) == .start(nick: "annsmith2[m]"))
        #expect(pool.speak(userId: "7", name: "averyveryverylongname", at: .zero) == .start(nick: "averyver2[m]"))
        #expect(PuppetPool(PuppetOptions(enabled: true, suffix: "")).uniqueNick(for: "-x") == "_-x")
    }
}

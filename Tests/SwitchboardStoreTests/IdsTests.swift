@testable import SwitchboardStore
import Testing

@Suite("Ids")
struct IdsTests {
    private static let alphabet = Set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    @Test func randomIdsAreThePrefixAndTwentyCharactersOfTheAlphabet() {
        let ids = (0..<1_000).map { _ in Ids.make("u_") }
        for id in ids {
            #expect(id.hasPrefix("u_"))
            #expect(id.count == 22)
            #expect(id.dropFirst(2).allSatisfy(Self.alphabet.contains))
        }
        #expect(Set(ids).count == ids.count)
    }

    @Test func orderedIdsSortByTimeAndDifferWithinAMillisecond() {
        let times = [0, 1, 61, 62, 3_843, 1_764_547_200_000, 1_764_547_200_001, 218_340_105_584_895]
        let ids = times.map { Ids.makeOrdered("m_", milliseconds: $0) }
        #expect(ids == ids.sorted())
        for id in ids {
            #expect(id.hasPrefix("m_"))
            #expect(id.count == 22)
            #expect(id.dropFirst(2).allSatisfy(Self.alphabet.contains))
        }
        #expect(ids[0].dropFirst(2).prefix(8) == "00000000")
        #expect(ids[3].dropFirst(2).prefix(8) == "00000010")
        let sameMillisecond = (0..<1_000).map { _ in Ids.makeOrdered("m_", milliseconds: 42) }
        #expect(Set(sameMillisecond).count == sameMillisecond.count)
    }
}

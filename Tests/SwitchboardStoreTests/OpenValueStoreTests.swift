import SwitchboardProtocol
import Testing

@testable import SwitchboardSQLite
import SwitchboardStore

/// Open protocol values reach the store only as the ones it knows.
@Suite("The store and open protocol values", .timeLimit(.minutes(1)))
struct OpenValueStoreTests {
    @Test("a reaction action the store does not know is refused and changes nothing")
    func unknownReactionAction() async throws {
        try await withStore { (store: SQLiteStore) in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let message = try await store.send("hello", in: room, from: ana).message
            _ = try await store.react(messageId: message.id, userId: ana.id, reaction: "👍", action: .add, now: 5)
            await #expect(throws: StoreError.self) {
                try await store.react(messageId: message.id, userId: ana.id, reaction: "👍", action: ReactionAction(rawValue: "replace"), now: 6)
            }
            #expect(try await store.message(id: message.id)?.reactions == ["👍": 1])
        }
    }
}

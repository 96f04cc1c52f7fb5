import SwitchboardProtocol
import Testing

@testable import SwitchboardSQLite
import SwitchboardStore
import SwitchboardTesting

@Suite("Users", .timeLimit(.minutes(1)))
struct UserTests {
    @Test(arguments: TestDatabase.allCases) func createdUserCanBeReadBackByIdAndUsernameInAnyCase(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("Ana", displayName: "Ana Lovelace")
            #expect(ana.id.hasPrefix("u_"))
            #expect(try await store.user(id: ana.id) == ana)
            let credentials = try #require(try await store.credentials(username: "ANA"))
            #expect(credentials.user == ana)
            #expect(credentials.passwordHash == "hash-Ana")
            #expect(try await store.credentials(username: "nobody") == nil)
            #expect(try await store.user(id: "u_missing") == nil)
        }
    }

    @Test(arguments: TestDatabase.allCases) func usernameTakenInAnotherCaseIsAConflict(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            _ = try await store.makeUser("ana")
            #expect(await storeErrorCode { try await store.makeUser("ANA") } == .conflict)
            #expect(try await store.searchUsers(query: "ana", limit: 10).count == 1)
        }
    }

    @Test(arguments: TestDatabase.allCases) func concurrentWritesShareACommitButFailAlone(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            _ = try await store.makeUser("taken")
            // Many writes at once land in one turn of the writer, hence one transaction; the
            // ones that fail (a taken name) must not undo or fail the others.
            let outcomes = await withTaskGroup(of: (String, Bool).self) { group in
                for index in 0..<40 {
                    let name = index % 4 == 0 ? "taken" : "user\(index)"
                    group.addTask { (name, (try? await store.makeUser(name)) != nil) }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.count == 40)
            for (name, stored) in outcomes {
                #expect(stored == (name != "taken"), "\(name)")
            }
            #expect(try await store.searchUsers(query: "user", limit: 100).count == 30)
            #expect(try await store.searchUsers(query: "taken", limit: 100).count == 1)
        }
    }

    @Test func aWriteThatThrowsIsRolledBackAloneInTheTransactionItShares() async throws {
        struct Refused: Error {}
        try await withStore { store in
            // Writes waiting together share one transaction; one that throws after writing must
            // leave nothing behind, and the others must be stored.
            let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let stored: Bool
                        do {
                            try await store.write { connection in
                                _ = try await connection.query(
                                    """
                                    INSERT INTO users (id, username, username_key, display_name, display_name_key, is_bot, created_at)
                                    VALUES (?1, ?1, ?1, ?1, ?1, 0, 1)
                                    """, [.text("u_write\(index)")])
                                if index % 3 == 0 { throw Refused() }
                            }
                            stored = true
                        } catch {
                            stored = false
                        }
                        return (index, stored)
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.count == 20)
            for (index, stored) in outcomes {
                #expect(stored == (index % 3 != 0))
                let found = try await store.user(id: "u_write\(index)") != nil
                #expect(found == stored, "write \(index)")
            }
        }
    }

    @Test(arguments: TestDatabase.allCases) func usersByIdsSkipsUnknownIds(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let found = try await store.users(ids: [bob.id, "u_missing", ana.id])
            #expect(Set(found) == [ana, bob])
        }
    }

    @Test(arguments: TestDatabase.allCases) func searchMatchesSubstringsOfUsernameOrDisplayNameInAnyCase(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana", displayName: "Ana Lovelace")
            let bob = try await store.makeUser("bob", displayName: "Robert LOVE")
            _ = try await store.makeUser("carol", displayName: "Carol")
            #expect(try await store.searchUsers(query: "LOVE", limit: 10) == [ana, bob])
            #expect(try await store.searchUsers(query: "OB", limit: 10) == [bob])
            #expect(try await store.searchUsers(query: "love", limit: 1) == [ana])
        }
    }

    @Test(arguments: TestDatabase.allCases) func searchTreatsLikeWildcardsAsPlainCharacters(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let underscore = try await store.makeUser("a_b")
            _ = try await store.makeUser("axb")
            let percent = try await store.makeUser("pct", displayName: "100% bot")
            _ = try await store.makeUser("other", displayName: "1000 bots")
            #expect(try await store.searchUsers(query: "a_b", limit: 10) == [underscore])
            #expect(try await store.searchUsers(query: "0%", limit: 10) == [percent])
        }
    }
}

@Suite("Tokens", .timeLimit(.minutes(1)))
struct TokenTests {
    func token(_ user: User, _ hashByte: UInt8, now: Int = 100, expiresAt: Int? = nil) -> NewToken {
        NewToken(userId: user.id, hash: Array(repeating: hashByte, count: 32), name: "token \(hashByte)", kind: .api, now: now, expiresAt: expiresAt)
    }

    @Test(arguments: TestDatabase.allCases) func activeTokenIsFoundByHashWithItsUser(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let record = try await store.createToken(token(ana, 1))
            #expect(record.id.hasPrefix("t_"))
            let active = try #require(try await store.activeToken(hash: Array(repeating: 1, count: 32), now: 200))
            #expect(active.token == record)
            #expect(active.user == ana)
            #expect(try await store.activeToken(hash: Array(repeating: 2, count: 32), now: 200) == nil)
        }
    }

    @Test(arguments: TestDatabase.allCases) func expiredTokenIsNotActive(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            _ = try await store.createToken(token(ana, 1, expiresAt: 500))
            #expect(try await store.activeToken(hash: Array(repeating: 1, count: 32), now: 499) != nil)
            #expect(try await store.activeToken(hash: Array(repeating: 1, count: 32), now: 500) == nil)
        }
    }

    @Test(arguments: TestDatabase.allCases) func revokedTokenIsNotActiveAndOnlyItsOwnerMayRevokeIt(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let record = try await store.createToken(token(ana, 1))
            let hash: [UInt8] = Array(repeating: 1, count: 32)

            #expect(try await store.revokeToken(id: record.id, ownerId: bob.id, now: 300) == nil)
            #expect(try await store.activeToken(hash: hash, now: 301) != nil)

            let revoked = try #require(try await store.revokeToken(id: record.id, ownerId: ana.id, now: 300))
            #expect(revoked.revokedAt == 300)
            #expect(try await store.activeToken(hash: hash, now: 301) == nil)
            #expect(try await store.revokeToken(id: record.id, ownerId: nil, now: 400) == nil)
            #expect(try await store.revokeToken(id: "t_missing", ownerId: nil, now: 400) == nil)
            #expect(try await store.tokensRevoked(since: 300) == [record.id])
            #expect(try await store.tokensRevoked(since: 301) == [])
        }
    }

    @Test(arguments: TestDatabase.allCases) func deleteDeadTokensTakesOnlyTheUsersExpiredAndLongRevokedTokens(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            _ = try await store.createToken(token(ana, 1, expiresAt: 500))
            let live = try await store.createToken(token(ana, 2))
            let expiring = try await store.createToken(token(ana, 3, expiresAt: 1_001))
            let revokedLongAgo = try await store.createToken(token(ana, 4))
            let revokedLately = try await store.createToken(token(ana, 5))
            let bobs = try await store.createToken(token(bob, 6, expiresAt: 500))
            _ = try await store.revokeToken(id: revokedLongAgo.id, ownerId: nil, now: 300)
            _ = try await store.revokeToken(id: revokedLately.id, ownerId: nil, now: 900)

            #expect(try await store.deleteDeadTokens(userId: ana.id, now: 1_000, revokedBefore: 800) == 2)
            #expect(Set(try await store.tokens(userId: ana.id).map(\.id)) == [live.id, expiring.id, revokedLately.id])
            #expect(try await store.tokens(userId: bob.id).map(\.id) == [bobs.id])
            #expect(try await store.tokensRevoked(since: 0) == [revokedLately.id])
            #expect(try await store.deleteDeadTokens(userId: ana.id, now: 1_000, revokedBefore: 800) == 0)
        }
    }

    @Test(arguments: TestDatabase.allCases) func maxLiveCountsOnlyTheUsersLiveTokensOfTheKind(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            func capped(_ user: User, _ hashByte: UInt8, now: Int = 1_000, kind: TokenKind = .api, expiresAt: Int? = nil) -> NewToken {
                var new = token(user, hashByte, now: now, expiresAt: expiresAt)
                new.kind = kind
                new.maxLive = 2
                return new
            }
            let first = try await store.createToken(capped(ana, 1))
            _ = try await store.createToken(capped(ana, 2, expiresAt: 5_000))
            await #expect(throws: StoreError.self) { try await store.createToken(capped(ana, 3)) }
            #expect(try await store.activeToken(hash: Array(repeating: 3, count: 32), now: 1_000) == nil, "the refused token is not stored")

            // Neither another user's tokens nor sessions count.
            _ = try await store.createToken(capped(bob, 4))
            _ = try await store.createToken(capped(ana, 5, kind: .session))
            // Revoked and expired ones do not either.
            _ = try #require(try await store.revokeToken(id: first.id, ownerId: ana.id, now: 1_500))
            _ = try await store.createToken(capped(ana, 6, now: 2_000))
            await #expect(throws: StoreError.self) { try await store.createToken(capped(ana, 7, now: 4_999)) }
            _ = try await store.createToken(capped(ana, 8, now: 5_000))
        }
    }

    @Test(arguments: TestDatabase.allCases) func tokensAreListedNewestFirstPerUserOrForEverybody(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let older = try await store.createToken(token(ana, 1, now: 100))
            let newer = try await store.createToken(token(ana, 2, now: 200))
            let bobs = try await store.createToken(token(bob, 3, now: 150))
            #expect(try await store.tokens(userId: ana.id) == [newer, older])
            #expect(try await store.tokens(userId: nil) == [newer, bobs, older])
        }
    }
}

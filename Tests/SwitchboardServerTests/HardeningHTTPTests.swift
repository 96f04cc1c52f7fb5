import Foundation
import NIOCore
import SwitchboardProtocol
import SwitchboardStore
import SwitchboardTesting
import Testing

@testable import SwitchboardServer

// Regression tests of issue 8, HTTP side: each failed on the code before its fix.

@Suite("Hardening: numbers from outside never trap", .timeLimit(.minutes(1)))
struct OverflowTests {
    @Test("POST /api/tokens with a huge, zero or negative expiresInSeconds is invalid, and the server lives on")
    func tokenExpiryOutOfRange() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            for seconds in ["10000000000000000", "9223372036854775807", "0", "-1", "-9223372036854775808"] {
                let answer = try await server.request(.POST, "/api/tokens", token: alice.token, body: #"{"name": "bot", "expiresInSeconds": \#(seconds)}"#)
                expectHTTPError(answer, 400, .invalid)
            }
            // Beyond Int64: a decoding error, not a trap.
            let huge = try await server.request(.POST, "/api/tokens", token: alice.token, body: #"{"name": "bot", "expiresInSeconds": 1e30}"#)
            expectHTTPError(huge, 400, .invalid)
            // The longest allowed (100 years) works, and the server still answers.
            let longest = try await server.createToken(token: alice.token, expiresInSeconds: 100 * 365 * 24 * 3600)
            #expect(try await server.me(token: longest.token).status == 200)
        }
    }

    @Test("Administration.issueToken (switchboard tokens add --expires-in) refuses a lifetime out of range")
    func administrationTokenExpiry() async throws {
        let store = try await TestDatabase.selected.openStore(try TestServer.temporaryDatabasePath(), logger: .init(label: "test"))
        let admin = Administration(store: store, bcryptCost: 4)
        let (bot, _) = try await admin.addUser(username: "bot", password: nil, isBot: true)
        for seconds in [10_000_000_000_000_000, Int.max, 0, -5] {
            await #expect(throws: ProtocolError.self) { try await admin.issueToken(userId: bot.id, name: "x", expiresInSeconds: seconds) }
        }
        _ = try await admin.issueToken(userId: bot.id, name: "x", expiresInSeconds: 60)
        try await store.close()
    }

    @Test("history, long-poll and join numbers at the edges of Int answer, never trap")
    func queryAndEnvelopeEdges() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("edges", token: alice.token)
            try await server.post("one", roomId: room.id, token: alice.token)
            let path = "/api/rooms/\(room.id)/messages"
            for query in ["after=9223372036854775807", "before=-9223372036854775808", "after=-9223372036854775808&before=9223372036854775807",
                "limit=9223372036854775807", "after=9223372036854775807&limit=9223372036854775807"]
            {
                #expect(try await server.request(.GET, "\(path)?\(query)", token: alice.token).status == 200, "\(query)")
            }
            for query in ["after=9223372036854775808", "limit=-9223372036854775808", "before=1e3", "limit=99999999999999999999"] {
                expectHTTPError(try await server.request(.GET, "\(path)?\(query)", token: alice.token), 400, .invalid)
            }
            // Long polling: timeouts at the edges are clamped; a cursor position past Int is invalid.
            let start = try await server.poll(token: alice.token).decode(EventsResponse.self)
            let session = start.cursor.split(separator: ".")[0]
            let quick = try await server.poll(token: alice.token, query: "cursor=\(start.cursor)&timeoutMs=-9223372036854775808")
            #expect(quick.status == 200)
            expectHTTPError(try await server.poll(token: alice.token, query: "cursor=\(session).9223372036854775807&timeoutMs=0"), 400, .invalid)
            expectHTTPError(try await server.poll(token: alice.token, query: "cursor=\(session).99999999999999999999"), 400, .invalid)
            expectHTTPError(try await server.poll(token: alice.token, query: "cursor=\(start.cursor)&timeoutMs=9223372036854775808"), 400, .invalid)
            try await server.post("two", roomId: room.id, token: alice.token)
            let long = try await server.poll(token: alice.token, query: "cursor=\(start.cursor)&timeoutMs=9223372036854775807")
            #expect(try long.decode(EventsResponse.self).events.count >= 1)

            // `since` at the edge of Int replays nothing; past it, the envelope is invalid.
            let socket = try await server.connect(token: alice.token)
            let ack = try await socket.join(room.id, since: Int.max)
            #expect(ack.replayed == 0)
            let answer = try await socket.answer(toRaw: json(#"{"type": "join", "roomId": "ROOM", "data": {"since": 1e30}, "ref": "big"}"#, roomId: room.id), ref: "big")
            expectErrorFrame(answer, "invalid", ref: "big")
            await socket.close()
        }
    }

    @Test("a rate limit configured tiny answers a bounded retry, without trapping")
    func tinyRate() {
        var bucket = TokenBucket(rate: 1e-300, burst: 1, now: .zero)
        #expect(bucket.take(now: .zero) == .allowed)
        guard case .limited(let wait) = bucket.take(now: .zero) else {
            Issue.record("the second take was allowed")
            return
        }
        #expect(wait <= .seconds(86_400))
        #expect(Duration.seconds(Int64.max).milliseconds == Int.max)
    }
}

@Suite("Hardening: passwords and logins", .timeLimit(.minutes(1)))
struct PasswordTests {
    /// `switchboard_password_hashes_total` from /metrics.
    static func hashes(_ server: TestServer) async throws -> Int {
        let text = try await server.request(.GET, "/metrics", token: "metrics").text
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("switchboard_password_hashes_total ") }),
            let value = Double(line.split(separator: " ").last ?? "")
        else { throw TestFailure("no switchboard_password_hashes_total in /metrics") }
        return Int(value)
    }

    static func metrics(_ configuration: inout ServerConfiguration) {
        configuration.metricsToken = "metrics"
    }

    @Test("48 concurrent registrations of a taken name are refused without hashing, and /api/me is unaffected")
    func takenNameCostsNoHash() async throws {
        try await withServer(Self.metrics) { server in
            let alice = try await server.register("alice")
            let before = try await Self.hashes(server)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<48 {
                    group.addTask {
                        try await server.request(.POST, "/api/register", json: RegisterRequest(username: index.isMultiple(of: 2) ? "alice" : "ALICE", password: "password\(index)")).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == 409 }, "\(statuses)")
            #expect(try await Self.hashes(server) == before, "a taken name still ran bcrypt")
            #expect(try await server.me(token: alice.token).status == 200)
        }
    }

    @Test("a password with U+0000 is refused, and every byte of a long password counts")
    func nulAndLongPasswords() async throws {
        try await withServer { server in
            let nul = try await server.request(.POST, "/api/register", body: #"{"username": "nul", "password": "a\u0000bcdefgh"}"#)
            expectHTTPError(nul, 400, .invalid)
            #expect(nul.error?.message.contains("NUL") == true)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "nul", password: "a")), 401, .unauthorized)

            let prefix = String(repeating: "p", count: 72)
            _ = try await server.request(.POST, "/api/register", json: RegisterRequest(username: "long", password: prefix + "-one")).decode(AuthResponse.self, expecting: 201)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "long", password: prefix + "-two")), 401, .unauthorized)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "long", password: prefix)), 401, .unauthorized)
            #expect(try await server.request(.POST, "/api/login", json: LoginRequest(username: "long", password: prefix + "-one")).status == 200)
        }
    }

    @Test("a login with an unknown name runs bcrypt like one with a wrong password")
    func unknownNameHashesToo() async throws {
        try await withServer(Self.metrics) { server in
            _ = try await server.register("alice")
            let start = try await Self.hashes(server)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "wrong-password")), 401, .unauthorized)
            let afterWrong = try await Self.hashes(server)
            #expect(afterWrong == start + 1)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "nobody", password: "wrong-password")), 401, .unauthorized)
            // The first unknown name also makes the dummy hash; each one after costs one verification.
            let afterUnknown = try await Self.hashes(server)
            #expect(afterUnknown > afterWrong)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "nobody2", password: "wrong-password")), 401, .unauthorized)
            #expect(try await Self.hashes(server) == afterUnknown + 1)
        }
    }

    @Test("a hash stored before pre-hashing still verifies the old way")
    func legacyHash() async throws {
        let hasher = PasswordHasher(cost: 4, pool: .singleton, capacity: 4)
        let new = try await hasher.hash(password: "password123")
        #expect(new.hasPrefix(PasswordHasher.prehashMarker))
        let legacy = String(new.dropFirst(PasswordHasher.prehashMarker.count))
        // `legacy` is a plain bcrypt hash of the pre-hash: the old path verifies exactly that text.
        #expect(try await hasher.verify(password: PasswordHasher.prehash("password123"), hash: legacy))
        #expect(try await hasher.verify(password: "password123", hash: new))
        #expect(!(try await hasher.verify(password: "password124", hash: new)))
    }

    @Test("login and register are rate-limited per client address, with retryAfterMs and Retry-After")
    func perAddressLimit() async throws {
        try await withServer({ $0.authAttemptsPerMinutePerAddress = 3 }) { server in
            _ = try await server.register("alice")
            var answers: [HTTPAnswer] = []
            for _ in 0..<3 {
                answers.append(try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123")))
            }
            #expect(answers.map(\.status) == [200, 200, 429])
            let limited = answers[2]
            expectHTTPError(limited, 429, .rateLimited)
            #expect((limited.error?.retryAfterMs ?? 0) > 0)
            #expect(limited.headers.first(name: "Retry-After").flatMap { Int($0) }.map { $0 >= 1 } == true)
            expectHTTPError(try await server.request(.POST, "/api/register", json: RegisterRequest(username: "bob", password: "password123")), 429, .rateLimited)
        }
    }

    @Test("login is rate-limited per username, while other names still log in")
    func perUsernameLimit() async throws {
        try await withServer({ $0.authAttemptsPerMinutePerUsername = 2 }) { server in
            _ = try await server.register("alice")
            _ = try await server.register("bob")
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "wrong-password")), 401, .unauthorized)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "ALICE", password: "password123")), 429, .rateLimited)
            #expect(try await server.request(.POST, "/api/login", json: LoginRequest(username: "bob", password: "password123")).status == 200)
        }
    }

    @Test("names that cannot be usernames share one attempts budget: the limiter keeps no key per such name, however long")
    func impossibleUsernamesShareABudget() async throws {
        try await withServer({ $0.authAttemptsPerMinutePerUsername = 2 }) { server in
            let long = String(repeating: "x", count: 100_000)
            for (index, expected) in [401, 401, 429].enumerated() {
                let answer = try await server.request(.POST, "/api/login", json: LoginRequest(username: long + "\(index)", password: "wrong-password"))
                #expect(answer.status == expected, "attempt \(index + 1)")
            }
            _ = try await server.register("alice")
            #expect(try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123")).status == 200)
        }
    }

    @Test("when the hashing queue is full, logins answer rate_limited instead of queueing")
    func boundedHashingQueue() async throws {
        try await withServer({
            $0.bcryptCost = 12
            $0.passwordHashThreads = 1
            $0.passwordHashQueue = 0
        }) { server in
            _ = try await server.register("alice")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "wrong-password")).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == 401 || $0 == 429 }, "\(statuses)")
            #expect(statuses.contains(429), "\(statuses)")
            #expect(statuses.contains(401), "\(statuses)")
        }
    }
}

@Suite("Hardening: HTTP connections", .timeLimit(.minutes(1)))
struct ConnectionTests {
    // Short, but long beside the steps of a test on a loaded machine (the whole suite runs at
    // once on two cores): a write must not find its connection already timed out.
    static func shortTimeouts(_ configuration: inout ServerConfiguration) {
        configuration.headerTimeout = .milliseconds(1_500)
        configuration.bodyTimeout = .milliseconds(1_500)
        configuration.idleTimeout = .milliseconds(1_500)
    }

    @Test("connections that send nothing, half a header or half a body are closed; a slow answer is not cut")
    func readTimeouts() async throws {
        try await withServer(Self.shortTimeouts) { server in
            let silent = try await RawClient.connect(port: server.port)
            let halfHeader = try await RawClient.connect(port: server.port)
            try await halfHeader.write(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8))
            let halfBody = try await RawClient.connect(port: server.port)
            try await halfBody.write(Array("POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"user".utf8))
            let keepAlive = try await RawClient.connect(port: server.port)
            try await keepAlive.write(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            #expect(try await keepAlive.readResponse().status == 200)
            for client in [silent, halfHeader, halfBody, keepAlive] {
                _ = try await client.waitUntilClosed(timeout: .seconds(10))
                #expect(client.isClosed)
            }

            // A long poll that waits longer than every timeout still gets its answer.
            let alice = try await server.register("alice")
            let cursor = try await server.poll(token: alice.token).decode(EventsResponse.self).cursor
            let poller = try await RawClient.connect(port: server.port)
            try await poller.write(Array("GET /api/events?cursor=\(cursor)&timeoutMs=4000 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(alice.token)\r\n\r\n".utf8))
            let answer = try await poller.readResponse(timeout: .seconds(10))
            #expect(answer.status == 200, "\(answer.text)")
            await poller.close()
        }
    }

    @Test("past the cap of connections per address, a new one is refused with 429 while the others still work")
    func connectionCap() async throws {
        try await withServer({ $0.maxConnectionsPerAddress = 3 }) { server in
            var open: [RawClient] = []
            // Each answered once before the next: the server counts a connection when its event
            // loop sets it up, and two loops need not do that in the order the clients connected.
            for _ in 0..<3 {
                let client = try await RawClient.connect(port: server.port)
                try await client.write(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
                #expect(try await client.readResponse().status == 200)
                open.append(client)
            }
            let refused = try await RawClient.connect(port: server.port)
            let refusal = try await refused.readResponse()
            #expect(refusal.status == 429)
            #expect(refusal.text.contains("rate_limited"))
            _ = try await refused.waitUntilClosed(timeout: .seconds(10))

            try await open[0].write(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            #expect(try await open[0].readResponse().status == 200)

            await open[1].close()
            // The closed one frees its place (its close is seen shortly after).
            let deadline = ContinuousClock.now + .seconds(10)
            while true {
                let next = try await RawClient.connect(port: server.port)
                // A refused connection is answered and closed at once, maybe before this is written.
                try? await next.write(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
                let status = try await next.readResponse().status
                await next.close()
                if status == 200 { break }
                #expect(status == 429)
                guard ContinuousClock.now < deadline else { throw TestFailure("the cap never freed the closed connection's place") }
                try await Task.sleep(for: .milliseconds(50))
            }
            for client in open { await client.close() }
        }
    }

    @Test("a shutdown ends within its deadline despite an idle socket and a WebSocket client that stopped reading")
    func shutdownDeadline() async throws {
        let clients = try await withTimeout(.seconds(30)) {
            try await withServer({
                $0.shutdownTimeout = .milliseconds(500)
                $0.headerTimeout = .seconds(600)
                $0.idleTimeout = .seconds(600)
                $0.pingInterval = .seconds(600)
            }) { server in
                let alice = try await server.register("alice")
                let idle = try await RawClient.connect(port: server.port)
                let (stalled, response) = try await RawClient.upgrade(port: server.port, token: alice.token, receiveBufferSize: 4096)
                #expect(response.status == 101)
                try await stalled.setReading(false)
                // Fill the stalled client's socket with pongs it never reads.
                let big = String(repeating: "x", count: 30_000)
                for index in 0..<100 { try await stalled.sendText(#"{"type": "ping", "data": "\#(big)", "ref": "\#(index)"}"#) }
                return [idle, stalled]
            }
        }
        #expect(clients.count == 2)
        for client in clients { await client.close() }
    }
}

@Suite("Hardening: sessions and tokens", .timeLimit(.minutes(1)))
struct SessionTests {
    @Test("register and login return tokenId and expiresAt; a session token expires")
    func sessionExpiry() async throws {
        try await withServer { server in
            let before = Int(Date().timeIntervalSince1970 * 1000)
            let alice = try await server.register("alice")
            let tokenId = try #require(alice.tokenId)
            let expiresAt = try #require(alice.expiresAt)
            let thirtyDays = 30 * 24 * 3600 * 1000
            #expect(expiresAt >= before + thirtyDays && expiresAt <= before + thirtyDays + 60_000)
            let login = try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123")).decode(AuthResponse.self)
            #expect(login.tokenId != nil && login.tokenId != tokenId)
        }
        try await withServer({ $0.sessionLifetime = .seconds(3) }) { server in
            let alice = try await server.register("alice")
            #expect(try await server.me(token: alice.token).status == 200)
            let socket = try await server.connect(token: alice.token)
            // Closed with 4001 when it expires, and refused after.
            #expect(try await socket.closed(timeout: .seconds(10)) == 4001)
            expectHTTPError(try await server.me(token: alice.token), 401, .unauthorized)
        }
    }

    @Test("GET /api/tokens lists the caller's live tokens, sessions included, and marks the current one")
    func listTokens() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let script = try await server.createToken(token: alice.token, name: "script")
            let revoked = try await server.createToken(token: alice.token, name: "old")
            #expect(try await server.request(.DELETE, "/api/tokens/\(revoked.id)", token: alice.token).status == 204)
            let list = try await server.request(.GET, "/api/tokens", token: alice.token).decode(TokensResponse.self)
            #expect(Set(list.tokens.map(\.id)) == [alice.tokenId, script.id])
            let session = try #require(list.tokens.first { $0.id == alice.tokenId })
            #expect(session.name == "session" && session.current && session.expiresAt != nil)
            let other = try #require(list.tokens.first { $0.id == script.id })
            #expect(other.name == "script" && !other.current && other.expiresAt == nil)
            #expect(!list.tokens.contains { $0.id == bob.tokenId })
            // Another user's token: 404, and it keeps working.
            expectHTTPError(try await server.request(.DELETE, "/api/tokens/\(try #require(bob.tokenId))", token: alice.token), 404, .notFound)
            #expect(try await server.me(token: bob.token).status == 200)
        }
    }

    @Test("a user's expired tokens are deleted as a new one is made; a revoked one is kept for other servers to see")
    func deadTokensAreDeleted() async throws {
        try await withServer({ $0.sessionLifetime = .seconds(4) }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let script = try await server.createToken(token: alice.token, name: "script")
            let socket = try await server.connect(token: alice.token)
            #expect(try await socket.closed(timeout: .seconds(10)) == 4001)
            #expect(try await server.request(.DELETE, "/api/tokens/\(script.id)", token: script.token).status == 204)
            #expect(try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123")).status == 200)

            let store = try await TestDatabase.selected.openStore(server.databasePath, logger: .init(label: "test"))
            let tokens = try await store.tokens(userId: alice.user.id)
            let bobs = try await store.tokens(userId: bob.user.id)
            try await store.close()
            #expect(!tokens.contains { $0.id == alice.tokenId }, "the expired session is deleted")
            #expect(tokens.contains { $0.id == script.id && $0.revokedAt != nil }, "the revoked token is kept")
            #expect(tokens.count == 2)
            #expect(bobs.map(\.id) == [bob.tokenId], "another user's expired session stays until he makes a token")
            expectHTTPError(try await server.me(token: alice.token), 401, .unauthorized)
        }
    }

    @Test("DELETE of one's own session token and POST /api/logout close that token's connections at once")
    func logoutAndRevokeSession() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let second = try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123")).decode(AuthResponse.self)
            let first = try await server.connect(token: alice.token)
            let other = try await server.connect(token: second.token)

            let logout = try await server.request(.POST, "/api/logout", token: alice.token)
            #expect(logout.status == 204)
            #expect(try await first.closed(timeout: .seconds(1)) == 4001)
            expectHTTPError(try await server.me(token: alice.token), 401, .unauthorized)
            try await other.roundTrip()

            #expect(try await server.request(.DELETE, "/api/tokens/\(try #require(second.tokenId))", token: second.token).status == 204)
            #expect(try await other.closed(timeout: .seconds(1)) == 4001)
            expectHTTPError(try await server.me(token: second.token), 401, .unauthorized)
        }
    }
}

@Suite("Hardening: long polling", .timeLimit(.minutes(1)))
struct PollHardeningTests {
    @Test("200 sequential polls with timeouts of 0 to 4 ms all return")
    func shortTimeoutsNeverHang() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let start = try await server.poll(token: alice.token).decode(EventsResponse.self).cursor
            let polls = try await withTimeout(.seconds(40)) {
                var cursor = start
                for index in 0..<200 {
                    let answer = try await server.poll(token: alice.token, query: "cursor=\(cursor)&timeoutMs=\(index % 5)")
                    cursor = try answer.decode(EventsResponse.self).cursor
                }
                return 200
            }
            #expect(polls == 200)
        }
    }

    @Test("past the cap of sessions per user, the oldest ends and its cursor is invalid")
    func sessionCap() async throws {
        try await withServer({ $0.maxPollSessionsPerUser = 2 }) { server in
            let alice = try await server.register("alice")
            var cursors: [String] = []
            for _ in 0..<3 { cursors.append(try await server.poll(token: alice.token).decode(EventsResponse.self).cursor) }
            expectHTTPError(try await server.poll(token: alice.token, query: "cursor=\(cursors[0])&timeoutMs=0"), 400, .invalid)
            for cursor in cursors.dropFirst() {
                #expect(try await server.poll(token: alice.token, query: "cursor=\(cursor)&timeoutMs=0").status == 200)
            }
        }
    }

    @Test("a session built from a member list read before a removal does not subscribe to that room")
    func removalBeforeSubscribe() async throws {
        let hub = Hub(configuration: ServerConfiguration(), metrics: ServerMetrics())
        let alice = User(id: "u_alice", username: "alice", displayName: "alice", isBot: false)
        let stale = Room(id: "r_1", name: "team", kind: .group, isPublic: false, createdAt: 0, lastSeq: 0, members: ["u_alice", "u_bob"])
        // The session read `stale` (alice a member); then alice was removed; then it subscribes.
        hub.remember(stale)
        var after = stale
        after.members = ["u_bob"]
        hub.memberRemoved(alice, from: after, by: nil, now: 1)
        let session = PollSession(id: "s", userId: alice.id, maxBacklog: 10)
        let connection = hub.register(user: alice, tokenId: nil, tokenExpiresAt: nil, sink: session, rooms: [stale], followsAllRooms: true, now: 2)
        #expect(!hub.isSubscribed(connection, to: stale.id))
        hub.unregister(connection, now: 3)
    }
}

@Suite("Hardening: queries, metrics and the 1.1 routes", .timeLimit(.minutes(1)))
struct DirectoryTests {
    @Test("a query string decodes + as a space")
    func plusIsSpace() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            _ = try await server.register("zebra", displayName: "Zebra Crossing")
            for query in ["zebra+cro", "zebra%20cro", "Zebra+Crossing"] {
                let users = try await server.request(.GET, "/api/users?query=\(query)", token: alice.token).decode(UsersResponse.self).users
                #expect(users.map(\.username) == ["zebra"], "\(query)")
            }
            // A literal plus is %2B.
            #expect(try await server.request(.GET, "/api/users?query=zebra%2Bcro", token: alice.token).decode(UsersResponse.self).users.isEmpty)
            expectHTTPError(try await server.request(.GET, "/api/users?query=%FF", token: alice.token), 400, .invalid)
        }
    }

    @Test("/metrics needs the metrics token, and is not served without one configured")
    func metricsToken() async throws {
        try await withServer { server in
            expectHTTPError(try await server.request(.GET, "/metrics"), 404, .notFound)
        }
        try await withServer({ $0.metricsToken = "scrape-me" }) { server in
            let alice = try await server.register("alice")
            expectHTTPError(try await server.request(.GET, "/metrics"), 401, .unauthorized)
            expectHTTPError(try await server.request(.GET, "/metrics", token: alice.token), 401, .unauthorized)
            let answer = try await server.request(.GET, "/metrics", token: "scrape-me")
            #expect(answer.status == 200 && answer.text.contains("switchboard_connections"))
        }
    }

    @Test("GET /api/users/{id}: the user, or 404 not_found")
    func userById() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob", displayName: "Bob B")
            let found = try await server.request(.GET, "/api/users/\(bob.user.id)", token: alice.token).decode(UserResponse.self)
            #expect(found.user == bob.user)
            expectHTTPError(try await server.request(.GET, "/api/users/u_nobody", token: alice.token), 404, .notFound)
            expectHTTPError(try await server.request(.GET, "/api/users/\(bob.user.id)"), 401, .unauthorized)
        }
    }

    @Test("GET /api/rooms/public: public group rooms by name, members or not, with query and limit")
    func publicRooms() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let gamma = try await server.createRoom("Gamma", token: alice.token, isPublic: true)
            let alpha = try await server.createRoom("alpha", token: alice.token, isPublic: true)
            let beta = try await server.createRoom("Beta team", token: bob.token, isPublic: true)
            _ = try await server.createRoom("Alphabet secret", token: alice.token, isPublic: false)
            _ = try await server.directRoom(with: alice.user.id, token: bob.token)

            func names(_ query: String) async throws -> [String] {
                try await server.request(.GET, "/api/rooms/public" + query, token: bob.token).decode(PublicRoomsResponse.self).rooms.map(\.name)
            }
            #expect(try await names("") == [alpha.name, beta.name, gamma.name])
            #expect(try await names("?query=A") == [alpha.name, beta.name, gamma.name])
            #expect(try await names("?query=ALPH") == [alpha.name])
            #expect(try await names("?query=beta+team") == [beta.name])
            #expect(try await names("?limit=2") == [alpha.name, beta.name])
            #expect(try await names("?query=%25") == [])
            #expect(try await names("?limit=9223372036854775807").count == 3)
            expectHTTPError(try await server.request(.GET, "/api/rooms/public?limit=0", token: bob.token), 400, .invalid)
            expectHTTPError(try await server.request(.GET, "/api/rooms/public?limit=x", token: bob.token), 400, .invalid)
            let room = try #require(try await server.request(.GET, "/api/rooms/public?query=gamma", token: bob.token).decode(PublicRoomsResponse.self).rooms.first)
            #expect(room.members == [alice.user.id])
        }
    }
}

@Suite("RequestTimeouts: which deadline holds when", .timeLimit(.minutes(1)))
struct RequestTimeoutsTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func timeouts() -> RequestTimeouts {
        RequestTimeouts(header: .seconds(10), body: .seconds(30), idle: .seconds(60), now: start)
    }

    @Test("a new connection has the header timeout; a request its body timeout; an answer none; then idle")
    func phases() {
        var timeouts = Self.timeouts()
        #expect(timeouts.deadline == Self.start + .seconds(10))
        #expect(!timeouts.isExpired(now: Self.start + .seconds(9)))
        #expect(timeouts.isExpired(now: Self.start + .seconds(10)))
        timeouts.receivedHead(now: Self.start + .seconds(1))
        #expect(timeouts.deadline == Self.start + .seconds(31))
        _ = timeouts.receivedEnd(now: Self.start)
        #expect(timeouts.deadline == nil)
        #expect(!timeouts.isExpired(now: Self.start + .seconds(3600)))
        #expect(timeouts.sentEnd(now: Self.start + .seconds(100)) == .none)
        #expect(timeouts.deadline == Self.start + .seconds(160))
    }

    @Test("a pipelined request keeps its body deadline while the one before is answered")
    func pipelined() {
        var timeouts = Self.timeouts()
        timeouts.receivedHead(now: Self.start)
        _ = timeouts.receivedEnd(now: Self.start)
        timeouts.receivedHead(now: Self.start + .seconds(1))
        #expect(timeouts.sentEnd(now: Self.start + .seconds(2)) == .none)
        #expect(timeouts.deadline == Self.start + .seconds(31))
        _ = timeouts.receivedEnd(now: Self.start)
        #expect(timeouts.sentEnd(now: Self.start + .seconds(3)) == .none)
        #expect(timeouts.deadline == Self.start + .seconds(63))
    }

    @Test("an answer sent before its request's body ended: the idle deadline starts when the body ends")
    func answeredBeforeTheBodyEnded() {
        var timeouts = Self.timeouts()
        timeouts.receivedHead(now: Self.start)
        #expect(timeouts.sentEnd(now: Self.start + .seconds(1)) == .none)
        #expect(timeouts.deadline == Self.start + .seconds(30))
        #expect(timeouts.receivedEnd(now: Self.start + .seconds(2)) == .none)
        #expect(timeouts.deadline == Self.start + .seconds(62))
        #expect(timeouts.isExpired(now: Self.start + .seconds(62)))

        var shuttingDown = Self.timeouts()
        shuttingDown.receivedHead(now: Self.start)
        #expect(shuttingDown.sentEnd(now: Self.start + .seconds(1)) == .none)
        #expect(shuttingDown.quiesce() == .none)
        #expect(shuttingDown.receivedEnd(now: Self.start + .seconds(2)) == .close)
    }

    @Test("a shutdown closes an idle connection at once, a busy one after its answer")
    func quiesce() {
        var idle = Self.timeouts()
        #expect(idle.quiesce() == .close)
        var busy = Self.timeouts()
        busy.receivedHead(now: Self.start)
        _ = busy.receivedEnd(now: Self.start)
        #expect(busy.quiesce() == .none)
        #expect(busy.sentEnd(now: Self.start + .seconds(1)) == .close)
    }
}

import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("HTTP API: every route of the contract", .timeLimit(.minutes(1)))
struct HTTPAPITests {
    // MARK: Accounts

    @Test("register answers 201 with the user and a working token; displayName defaults to the username")
    func register() async throws {
        try await withServer { server in
            let answer = try await server.request(.POST, "/api/register", json: RegisterRequest(username: "alice", password: "password123"))
            let auth = try answer.decode(AuthResponse.self, expecting: 201)
            #expect(auth.user.username == "alice")
            #expect(auth.user.displayName == "alice")
            #expect(auth.user.isBot == false)
            #expect(!auth.user.id.isEmpty)
            #expect(!auth.token.isEmpty)
            let me = try await server.me(token: auth.token).decode(UserResponse.self)
            #expect(me.user == auth.user)

            let bob = try await server.request(.POST, "/api/register", json: RegisterRequest(username: "bob", password: "password123", displayName: "Bob B."))
                .decode(AuthResponse.self, expecting: 201)
            #expect(bob.user.displayName == "Bob B.")
            #expect(bob.user.id != auth.user.id)
        }
    }

    @Test("a taken username is 409 conflict, without regard to case")
    func registerConflict() async throws {
        try await withServer { server in
            _ = try await server.register("Alice")
            for name in ["Alice", "alice", "ALICE", "aLiCe"] {
                let answer = try await server.request(.POST, "/api/register", json: RegisterRequest(username: name, password: "password123"))
                expectHTTPError(answer, 409, .conflict)
            }
        }
    }

    @Test("registration closed is 403 forbidden")
    func registrationClosed() async throws {
        try await withServer({ $0.registration = .closed }) { server in
            let answer = try await server.request(.POST, "/api/register", json: RegisterRequest(username: "alice", password: "password123"))
            expectHTTPError(answer, 403, .forbidden)
            // And no account was made.
            let login = try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123"))
            expectHTTPError(login, 401, .unauthorized)
        }
    }

    @Test("invalid usernames and passwords are 400 invalid; the edges of the rules are accepted")
    func registerValidation() async throws {
        try await withServer { server in
            let badNames = ["", "a b", "al/ice", "älice", "alice!", "@alice", String(repeating: "a", count: 33), "tab\tname"]
            for name in badNames {
                let answer = try await server.request(.POST, "/api/register", json: RegisterRequest(username: name, password: "password123"))
                expectHTTPError(answer, 400, .invalid)
            }
            for password in ["", "1234567", String(repeating: "p", count: 129)] {
                let answer = try await server.request(.POST, "/api/register", json: RegisterRequest(username: "valid", password: password))
                expectHTTPError(answer, 400, .invalid)
            }
            expectHTTPError(try await server.request(.POST, "/api/register", body: "{}"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/register", body: #"{"username": "x"}"#), 400, .invalid)

            // The edges: every allowed character, 32 characters, passwords of 8 and 128.
            for (name, password) in [
                ("a.B_c-9", "12345678"), (String(repeating: "z", count: 32), String(repeating: "p", count: 128)), ("x", "password"),
            ] {
                let answer = try await server.request(.POST, "/api/register", json: RegisterRequest(username: name, password: password))
                #expect(answer.status == 201, "\(name): \(answer.text)")
            }
        }
    }

    @Test("login answers 200 with a new token; a wrong password or unknown user is 401")
    func login() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let answer = try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123"))
            let auth = try answer.decode(AuthResponse.self, expecting: 200)
            #expect(auth.user == alice.user)
            #expect(auth.token != alice.token)
            #expect(try await server.me(token: auth.token).decode(UserResponse.self).user == alice.user)
            // The first token still works too.
            #expect(try await server.me(token: alice.token).status == 200)

            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "wrongpassword")), 401, .unauthorized)
            expectHTTPError(try await server.request(.POST, "/api/login", json: LoginRequest(username: "nobody", password: "password123")), 401, .unauthorized)
        }
    }

    @Test("me answers {user}; a missing or unknown token is 401")
    func me() async throws {
        try await withServer { server in
            let alice = try await server.register("alice", displayName: "Alice A.")
            let me = try await server.me(token: alice.token).decode(UserResponse.self)
            #expect(me.user.id == alice.user.id)
            #expect(me.user.displayName == "Alice A.")
            expectHTTPError(try await server.request(.GET, "/api/me"), 401, .unauthorized)
            expectHTTPError(try await server.me(token: "not-a-token"), 401, .unauthorized)
            expectHTTPError(try await server.request(.GET, "/api/me", headers: [("Authorization", "Basic YWxpY2U6cGFzc3dvcmQxMjM=")]), 401, .unauthorized)
        }
    }

    static let protectedRoutes: [(String, String)] = [
        ("GET", "/api/me"), ("POST", "/api/tokens"), ("DELETE", "/api/tokens/t1"), ("GET", "/api/users?query=a"),
        ("GET", "/api/rooms"), ("POST", "/api/rooms"), ("GET", "/api/rooms/r1"), ("POST", "/api/rooms/r1/members"),
        ("DELETE", "/api/rooms/r1/members/u1"), ("POST", "/api/dms"), ("GET", "/api/rooms/r1/messages"),
        ("POST", "/api/rooms/r1/messages"), ("GET", "/api/events"),
    ]

    @Test("every route but register, login, healthz and metrics needs a bearer token")
    func authenticationRequired() async throws {
        try await withServer { server in
            for (method, path) in Self.protectedRoutes {
                for token in [nil, "bogus"] as [String?] {
                    let body: String? = method == "POST" ? #"{"name": "x", "userId": "u1", "content": "hi"}"# : nil
                    let answer = try await server.request(method == "GET" ? .GET : method == "POST" ? .POST : .DELETE, path, token: token, body: body)
                    #expect(answer.status == 401, "\(method) \(path) token \(token ?? "none"): \(answer.status) \(answer.text)")
                    #expect(answer.error?.code == .unauthorized, "\(method) \(path): \(answer.text)")
                }
            }
        }
    }

    // MARK: Tokens

    @Test("tokens: 201 {id, token}; only the owner deletes (204, others 404); a deleted token stops at once on HTTP and WebSocket")
    func tokens() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let created = try await server.createToken(token: alice.token, name: "bot script")
            #expect(!created.id.isEmpty)
            #expect(created.token != alice.token)
            #expect(try await server.me(token: created.token).decode(UserResponse.self).user == alice.user)

            let tokenSocket = try await server.connect(token: created.token)
            let sessionSocket = try await server.connect(token: alice.token)
            try await tokenSocket.roundTrip()

            // Someone else's token, and an unknown one: 404, and the token keeps working.
            expectHTTPError(try await server.request(.DELETE, "/api/tokens/\(created.id)", token: bob.token), 404, .notFound)
            expectHTTPError(try await server.request(.DELETE, "/api/tokens/no-such-token", token: alice.token), 404, .notFound)
            #expect(try await server.me(token: created.token).status == 200)
            try await tokenSocket.roundTrip()

            let deleted = try await server.request(.DELETE, "/api/tokens/\(created.id)", token: alice.token)
            #expect(deleted.status == 204, "\(deleted.text)")
            // The revocation closes the socket itself (the bound only keeps a slow machine from failing the test).
            #expect(try await tokenSocket.closed(timeout: .seconds(5)) == 4001)
            expectHTTPError(try await server.me(token: created.token), 401, .unauthorized)
            // Deleting it again: it is gone.
            expectHTTPError(try await server.request(.DELETE, "/api/tokens/\(created.id)", token: alice.token), 404, .notFound)
            // A new WebSocket with it is refused.
            await #expect(throws: (any Error).self) { _ = try await server.connect(token: created.token) }

            // Alice's other token and its socket are untouched.
            #expect(try await server.me(token: alice.token).status == 200)
            try await sessionSocket.roundTrip()
            #expect(!sessionSocket.isClosed)
            await sessionSocket.close()
        }
    }

    @Test("a user holds at most maxTokensPerUser live API tokens: one more is 409 and stores nothing; a revoked one makes room; sessions and other users do not count")
    func tokenCap() async throws {
        try await withServer({ $0.maxTokensPerUser = 3 }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            var made: [CreateTokenResponse] = []
            for index in 1...3 { made.append(try await server.createToken(token: alice.token, name: "script \(index)")) }

            let refused = try await server.request(.POST, "/api/tokens", token: alice.token, json: CreateTokenRequest(name: "one more"))
            expectHTTPError(refused, 409, .conflict)
            #expect(refused.error?.message.contains("DELETE /api/tokens/") == true, "\(refused.text)")
            let listed = try await server.request(.GET, "/api/tokens", token: alice.token).decode(TokensResponse.self)
            #expect(listed.tokens.count == 4, "the session and the three scripts: \(listed.tokens.map(\.name))")
            #expect(!listed.tokens.contains { $0.name == "one more" })

            _ = try await server.createToken(token: bob.token, name: "bob's own")
            #expect(try await server.request(.POST, "/api/login", json: LoginRequest(username: "alice", password: "password123")).status == 200)

            #expect(try await server.request(.DELETE, "/api/tokens/\(made[0].id)", token: alice.token).status == 204)
            _ = try await server.createToken(token: alice.token, name: "in its place")
            expectHTTPError(try await server.request(.POST, "/api/tokens", token: alice.token, json: CreateTokenRequest(name: "again")), 409, .conflict)
        }
    }

    @Test("a token made with expiresInSeconds works until then, is refused after, and its socket is closed with 4001")
    func expiringToken() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let started = ContinuousClock.now
            // Long enough that a loaded machine (the whole suite runs at once on two cores) still
            // connects and asks before it expires.
            let created = try await server.createToken(token: alice.token, name: "short", expiresInSeconds: 8)
            let socket = try await server.connect(token: created.token)
            #expect(try await server.me(token: created.token).status == 200)
            try await socket.roundTrip()

            let code = try await socket.closed(timeout: .seconds(15))
            #expect(code == 4001)
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(7_900), "closed before the token expired (\(elapsed))")
            expectHTTPError(try await server.me(token: created.token), 401, .unauthorized)
            await #expect(throws: (any Error).self) { _ = try await server.connect(token: created.token) }
            #expect(try await server.me(token: alice.token).status == 200)
        }
    }

    // MARK: Users

    @Test("users search: case-insensitive substring of username or display name")
    func searchUsers() async throws {
        try await withServer { server in
            let alice = try await server.register("alice", displayName: "Wonder Land")
            let alicia = try await server.register("Alicia")
            let bob = try await server.register("bob")

            func search(_ query: String) async throws -> Set<String> {
                Set(try await server.request(.GET, "/api/users?query=\(query)", token: bob.token).decode(UsersResponse.self).users.map(\.id))
            }
            #expect(try await search("ALI") == [alice.user.id, alicia.user.id])
            #expect(try await search("lici") == [alicia.user.id])
            #expect(try await search("wonder") == [alice.user.id])
            #expect(try await search("r%20l") == [alice.user.id])
            #expect(try await search("zzz").isEmpty)
            let found = try await server.request(.GET, "/api/users?query=bob", token: bob.token).decode(UsersResponse.self).users
            #expect(found == [bob.user])
        }
    }

    @Test("users search answers at most 50 users")
    func searchUsersLimit() async throws {
        try await withServer { server in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<55 {
                    group.addTask { _ = try await server.register("member\(index)") }
                }
                try await group.waitForAll()
            }
            let me = try await server.register("searcher")
            let users = try await server.request(.GET, "/api/users?query=member", token: me.token).decode(UsersResponse.self).users
            #expect(users.count == 50)
            #expect(Set(users.map(\.id)).count == 50)
        }
    }

    // MARK: Rooms

    @Test("create room: 201 {room}; the caller and the given members are members; isPublic defaults to false")
    func createRoom() async throws {
        try await withServer { server in
            let before = Int(Date().timeIntervalSince1970 * 1000)
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let answer = try await server.request(.POST, "/api/rooms", token: alice.token, body: #"{"name": "general", "members": ["\#(bob.user.id)"]}"#)
            let room = try answer.decode(RoomResponse.self, expecting: 201).room
            #expect(room.name == "general")
            #expect(room.kind == .group)
            #expect(room.isPublic == false)
            #expect(room.lastSeq == 0)
            #expect(Set(room.members) == [alice.user.id, bob.user.id])
            #expect(room.members.count == 2)
            #expect(room.createdAt >= before - 5_000 && room.createdAt <= Int(Date().timeIntervalSince1970 * 1000) + 5_000)

            let open = try await server.createRoom("lobby", token: bob.token, isPublic: true)
            #expect(open.isPublic)
            #expect(open.members == [bob.user.id])
            #expect(open.id != room.id)

            expectHTTPError(try await server.request(.POST, "/api/rooms", token: alice.token, body: #"{"name": ""}"#), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms", token: alice.token, body: #"{"name": "   "}"#), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms", token: alice.token, json: CreateRoomRequest(name: String(repeating: "n", count: 101))), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms", token: alice.token, body: #"{"isPublic": true}"#), 400, .invalid)
            let longest = try await server.request(.POST, "/api/rooms", token: alice.token, json: CreateRoomRequest(name: String(repeating: "n", count: 100)))
            #expect(longest.status == 201)
        }
    }

    @Test("get room: members read it; a private room is 403 to others; a public room is readable by anyone; unknown is 404")
    func getRoom() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let secret = try await server.createRoom("secret", token: alice.token)
            let lobby = try await server.createRoom("lobby", token: alice.token, isPublic: true)
            try await server.post("hello", roomId: lobby.id, token: alice.token)
            try await server.post("psst", roomId: secret.id, token: alice.token)

            #expect(try await server.room(secret.id, token: alice.token).decode(RoomResponse.self).room.id == secret.id)
            expectHTTPError(try await server.room(secret.id, token: bob.token), 403, .forbidden)
            expectHTTPError(try await server.request(.GET, "/api/rooms/\(secret.id)/messages", token: bob.token), 403, .forbidden)

            let read = try await server.room(lobby.id, token: bob.token).decode(RoomResponse.self).room
            #expect(read.id == lobby.id)
            #expect(read.lastSeq == 1)
            #expect(!read.members.contains(bob.user.id), "reading must not make bob a member")
            let history = try await server.history(lobby.id, token: bob.token)
            #expect(history.messages.map(\.content) == ["hello"])
            // Reading is not sending.
            expectHTTPError(try await server.postMessage(lobby.id, token: bob.token, ["content": "hi"]), 403, .forbidden)
            // And bob's room list only has rooms he is a member of.
            #expect(try await server.rooms(token: bob.token).isEmpty)

            expectHTTPError(try await server.room("no-such-room", token: alice.token), 404, .notFound)
            expectHTTPError(try await server.request(.GET, "/api/rooms/no-such-room/messages", token: alice.token), 404, .notFound)
        }
    }

    @Test("add member: a member may add others; anyone may add themself to a public room; otherwise 403")
    func addMember() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")
            let dave = try await server.register("dave")
            let secret = try await server.createRoom("secret", token: alice.token)
            let lobby = try await server.createRoom("lobby", token: alice.token, isPublic: true)

            // A non-member may not add themself to a private room, nor others anywhere.
            expectHTTPError(try await server.addMember(carol.user.id, to: secret.id, token: carol.token), 403, .forbidden)
            expectHTTPError(try await server.addMember(dave.user.id, to: secret.id, token: carol.token), 403, .forbidden)
            expectHTTPError(try await server.addMember(dave.user.id, to: lobby.id, token: carol.token), 403, .forbidden)

            // A member adds someone, who may then add someone else.
            let added = try await server.addMember(bob.user.id, to: secret.id, token: alice.token).decode(RoomResponse.self).room
            #expect(Set(added.members) == [alice.user.id, bob.user.id])
            let again = try await server.addMember(carol.user.id, to: secret.id, token: bob.token).decode(RoomResponse.self).room
            #expect(Set(again.members) == [alice.user.id, bob.user.id, carol.user.id])
            #expect(try await server.room(secret.id, token: carol.token).status == 200)

            // Anyone may add themself to a public room.
            let joined = try await server.addMember(dave.user.id, to: lobby.id, token: dave.token).decode(RoomResponse.self).room
            #expect(joined.members.contains(dave.user.id))
            #expect(try await server.summary(lobby.id, token: dave.token) != nil)

            expectHTTPError(try await server.addMember(bob.user.id, to: "no-such-room", token: alice.token), 404, .notFound)
        }
    }

    @Test("remove member: oneself, or anyone by the creator; others 403; a non-member is 404")
    func removeMember() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")
            let dave = try await server.register("dave")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id, carol.user.id])

            // Bob is a member but not the creator: he cannot remove carol.
            expectHTTPError(try await server.removeMember(carol.user.id, from: room.id, token: bob.token), 403, .forbidden)
            // Bob removes himself.
            let afterBob = try await server.removeMember(bob.user.id, from: room.id, token: bob.token).decode(RoomResponse.self).room
            #expect(Set(afterBob.members) == [alice.user.id, carol.user.id])
            expectHTTPError(try await server.room(room.id, token: bob.token), 403, .forbidden)
            #expect(try await server.summary(room.id, token: bob.token) == nil)
            // The creator removes carol.
            let afterCarol = try await server.removeMember(carol.user.id, from: room.id, token: alice.token).decode(RoomResponse.self).room
            #expect(afterCarol.members == [alice.user.id])
            // Removing someone who is not a member: 404.
            expectHTTPError(try await server.removeMember(dave.user.id, from: room.id, token: alice.token), 404, .notFound)
            expectHTTPError(try await server.removeMember(carol.user.id, from: room.id, token: alice.token), 404, .notFound)
        }
    }

    @Test("DMs: 200 every time, one room for both directions, exactly two members, no third member")
    func directMessages() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")

            let first = try await server.directRoom(with: bob.user.id, token: alice.token)
            #expect(first.status == 200, "\(first.text)")
            let room = try first.decode(RoomResponse.self).room
            #expect(room.kind == .direct)
            #expect(room.isPublic == false)
            #expect(Set(room.members) == [alice.user.id, bob.user.id])
            #expect(room.members.count == 2)

            let again = try await server.directRoom(with: bob.user.id, token: alice.token).decode(RoomResponse.self).room
            #expect(again.id == room.id)
            let reverse = try await server.directRoom(with: alice.user.id, token: bob.token).decode(RoomResponse.self).room
            #expect(reverse.id == room.id)
            let other = try await server.directRoom(with: carol.user.id, token: alice.token).decode(RoomResponse.self).room
            #expect(other.id != room.id)

            expectHTTPError(try await server.addMember(carol.user.id, to: room.id, token: alice.token), 403, .forbidden)
            expectHTTPError(try await server.addMember(carol.user.id, to: room.id, token: carol.token), 403, .forbidden)
            expectHTTPError(try await server.room(room.id, token: carol.token), 403, .forbidden)
            let unchanged = try await server.room(room.id, token: bob.token).decode(RoomResponse.self).room
            #expect(Set(unchanged.members) == [alice.user.id, bob.user.id])

            // It works as a room: both may send and read.
            try await server.post("hi bob", roomId: room.id, token: alice.token)
            try await server.post("hi alice", roomId: room.id, token: bob.token)
            #expect(try await server.history(room.id, token: bob.token).messages.map(\.content) == ["hi bob", "hi alice"])
        }
    }

    @Test("rooms list: member rooms only, with lastMessage and unread counts that read markers reset")
    func roomList() async throws {
        try await withServer(unlimitedRate) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let quiet = try await server.createRoom("quiet", token: alice.token)

            let empty = try #require(try await server.summary(quiet.id, token: alice.token))
            #expect(empty.lastMessage == nil)
            #expect(empty.unread == 0)

            for index in 1...3 { try await server.post("from bob \(index)", roomId: room.id, token: bob.token) }
            var summary = try #require(try await server.summary(room.id, token: alice.token))
            #expect(summary.lastMessage?.seq == 3)
            #expect(summary.lastMessage?.content == "from bob 3")
            #expect(summary.room.lastSeq == 3)
            #expect(summary.unread == 3)
            #expect(try await server.summary(room.id, token: bob.token)?.unread == 0, "a member's own messages are never unread")
            #expect(try await server.rooms(token: carol.token).isEmpty)
            #expect(Set(try await server.rooms(token: alice.token).map(\.room.id)) == [room.id, quiet.id])
            #expect(try await server.rooms(token: bob.token).map(\.room.id) == [room.id])

            // An older page is not the newest page: the marker stays.
            _ = try await server.history(room.id, token: alice.token, query: "before=3&limit=1")
            #expect(try await server.summary(room.id, token: alice.token)?.unread == 3)
            // Reading the newest page moves the marker.
            _ = try await server.history(room.id, token: alice.token)
            #expect(try await server.summary(room.id, token: alice.token)?.unread == 0)

            // Joining over WebSocket moves it.
            try await server.post("from bob 4", roomId: room.id, token: bob.token)
            try await server.post("from bob 5", roomId: room.id, token: bob.token)
            #expect(try await server.summary(room.id, token: alice.token)?.unread == 2)
            let socket = try await server.connect(token: alice.token)
            try await socket.join(room.id)
            #expect(try await server.summary(room.id, token: alice.token)?.unread == 0)
            await socket.close()

            // Sending moves it.
            try await server.post("from bob 6", roomId: room.id, token: bob.token)
            #expect(try await server.summary(room.id, token: alice.token)?.unread == 1)
            try await server.post("from alice", roomId: room.id, token: alice.token)
            summary = try #require(try await server.summary(room.id, token: alice.token))
            #expect(summary.unread == 0)
            #expect(summary.lastMessage?.userId == alice.user.id)
            #expect(summary.lastMessage?.seq == 7)
            #expect(try await server.summary(room.id, token: bob.token)?.unread == 1)
        }
    }

    // MARK: History

    @Test("history paging: newest page, before, after, both; limit capped at 200; hasMore in the direction of paging")
    func historyPaging() async throws {
        try await withServer(unlimitedRate) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("long", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let sent = try await socket.fill(room.id, count: 250)
            #expect(seqs(sent) == Array(1...250))
            await socket.close()

            func page(_ query: String) async throws -> MessagesResponse {
                try await server.history(room.id, token: alice.token, query: query)
            }
            var result = try await page("")
            #expect(seqs(result.messages) == Array(201...250))
            #expect(result.hasMore)
            #expect(result.messages.map(\.content) == (201...250).map { "m \($0)" })

            result = try await page("limit=10")
            #expect(seqs(result.messages) == Array(241...250))
            #expect(result.hasMore)

            result = try await page("limit=250")
            #expect(seqs(result.messages) == Array(51...250), "a limit over 200 is treated as 200")
            #expect(result.hasMore)
            result = try await page("limit=200")
            #expect(seqs(result.messages) == Array(51...250))

            result = try await page("before=11&limit=5")
            #expect(seqs(result.messages) == Array(6...10))
            #expect(result.hasMore)
            result = try await page("before=6&limit=5")
            #expect(seqs(result.messages) == Array(1...5))
            #expect(!result.hasMore)
            result = try await page("before=3&limit=5")
            #expect(seqs(result.messages) == [1, 2])
            #expect(!result.hasMore)

            result = try await page("after=0&limit=10")
            #expect(seqs(result.messages) == Array(1...10))
            #expect(result.hasMore)
            result = try await page("after=240&limit=10")
            #expect(seqs(result.messages) == Array(241...250))
            #expect(!result.hasMore)
            result = try await page("after=245&limit=10")
            #expect(seqs(result.messages) == Array(246...250))
            #expect(!result.hasMore)
            result = try await page("after=250")
            #expect(result.messages.isEmpty)
            #expect(!result.hasMore)
            result = try await page("after=10")
            #expect(seqs(result.messages) == Array(11...60))
            #expect(result.hasMore)

            result = try await page("after=10&before=20")
            #expect(seqs(result.messages) == Array(11...19))
            result = try await page("after=10&before=20&limit=5")
            #expect(seqs(result.messages) == Array(11...15), "with both, from after upwards")
            #expect(result.hasMore)

            for bad in ["limit=0", "limit=-1", "limit=abc", "limit="] {
                expectHTTPError(try await server.request(.GET, "/api/rooms/\(room.id)/messages?\(bad)", token: alice.token), 400, .invalid)
            }

            let quiet = try await server.createRoom("quiet", token: alice.token)
            let none = try await server.history(quiet.id, token: alice.token)
            #expect(none.messages.isEmpty)
            #expect(!none.hasMore)
        }
    }

    // MARK: Messages

    @Test("POST message: 201 {message, duplicate: false}; a repeated clientId is 200 duplicate: true")
    func postMessage() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let meta: JSONValue = ["bridge": ["network": "irc", "channel": "#rust", "nick": "ana"], "n": 1.5, "list": [1, "two", nil, true]]
            let answer = try await server.postMessage(room.id, token: alice.token, ["content": "  hello there \n", "clientId": "c-1", "meta": meta])
            #expect(answer.status == 201, "\(answer.text)")
            let ack = try answer.decode(MessageAck.self, expecting: 201)
            #expect(ack.duplicate == false)
            #expect(ack.message.content == "hello there")
            #expect(ack.message.seq == 1)
            #expect(ack.message.roomId == room.id)
            #expect(ack.message.userId == alice.user.id)
            #expect(ack.message.clientId == "c-1")
            #expect(ack.message.meta == meta)
            #expect(ack.message.deleted == false)
            #expect(ack.message.reactions.isEmpty)
            #expect(ack.message.editedAt == nil)

            let repeated = try await server.postMessage(room.id, token: alice.token, ["content": "hello there", "clientId": "c-1"])
            #expect(repeated.status == 200, "\(repeated.text)")
            let duplicate = try repeated.decode(MessageAck.self, expecting: 200)
            #expect(duplicate.duplicate == true)
            #expect(duplicate.message.id == ack.message.id)
            #expect(duplicate.message.seq == 1)

            let reply = try await server.postMessage(room.id, token: alice.token, ["content": "a reply", "replyTo": .string(ack.message.id)])
                .decode(MessageAck.self, expecting: 201)
            #expect(reply.message.replyTo == ack.message.id)
            #expect(reply.message.seq == 2)

            let stored = try await server.history(room.id, token: alice.token).messages
            #expect(stored.count == 2)
            #expect(stored.first?.meta == meta)
            #expect(stored.first?.content == "hello there")

            expectHTTPError(try await server.postMessage("no-such-room", token: alice.token, ["content": "hi"]), 404, .notFound)
            expectHTTPError(try await server.postMessage(room.id, token: alice.token, ["content": "   "]), 400, .invalid)
            expectHTTPError(try await server.postMessage(room.id, token: alice.token, ["text": "hi"]), 400, .invalid)
            #expect(try await server.history(room.id, token: alice.token).messages.count == 2)
        }
    }

    @Test("a non-member cannot send; a private room's non-member gets 403")
    func postMessageNonMember() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let secret = try await server.createRoom("secret", token: alice.token)
            expectHTTPError(try await server.postMessage(secret.id, token: bob.token, ["content": "hi"]), 403, .forbidden)
            #expect(try await server.history(secret.id, token: alice.token).messages.isEmpty)
        }
    }

    // MARK: Errors and operations

    @Test("an unknown route is 404 not_found with the error body")
    func unknownRoute() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            expectHTTPError(try await server.request(.GET, "/api/nope", token: alice.token), 404, .notFound)
            expectHTTPError(try await server.request(.GET, "/nope"), 404, .notFound)
            expectHTTPError(try await server.request(.POST, "/api/rooms/x/y/z", token: alice.token, body: "{}"), 404, .notFound)
            #expect(try await server.request(.GET, "/nope").headers.first(name: "Content-Type")?.contains("json") == true)
        }
    }

    @Test("a body that is not JSON, or JSON of the wrong shape, is 400 invalid")
    func badBodies() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            expectHTTPError(try await server.request(.POST, "/api/register", body: "not json"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/login", body: "{\"username\": "), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms", token: alice.token, body: "{"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms", token: alice.token, body: "[1, 2]"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms/\(room.id)/messages", token: alice.token, body: "hello"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms/\(room.id)/messages", token: alice.token, body: "[1, 2]"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms/\(room.id)/messages", token: alice.token, body: #"{"content": 5}"#), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/rooms/\(room.id)/members", token: alice.token, body: "{}"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/dms", token: alice.token, body: "nope"), 400, .invalid)
            expectHTTPError(try await server.request(.POST, "/api/tokens", token: alice.token, body: "nope"), 400, .invalid)
            #expect(try await server.history(room.id, token: alice.token).messages.isEmpty)
        }
    }

    @Test("over the rate limit: 429 rate_limited with retryAfterMs and a Retry-After header; nothing stored")
    func rateLimitedHTTP() async throws {
        // A bucket that does not refill during the test, however slow the machine.
        try await withServer({ $0.messageBurst = 2; $0.messagesPerSecond = 0.01 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            try await server.post("one", roomId: room.id, token: alice.token)
            try await server.post("two", roomId: room.id, token: alice.token)
            let answer = try await server.postMessage(room.id, token: alice.token, ["content": "three"])
            expectHTTPError(answer, 429, .rateLimited)
            let retryAfterMs = try #require(answer.error?.retryAfterMs)
            #expect(retryAfterMs > 0 && retryAfterMs <= 100_000)
            let header = try #require(answer.headers.first(name: "Retry-After"), "no Retry-After header")
            let seconds = try #require(Int(header), "Retry-After is not whole seconds: \(header)")
            #expect(seconds >= 1)
            #expect(seconds * 1000 >= retryAfterMs, "Retry-After \(seconds) s is shorter than retryAfterMs \(retryAfterMs)")
            #expect(try await server.history(room.id, token: alice.token).messages.map(\.content) == ["one", "two"])
        }
    }

    @Test("healthz answers 200 {status: ok} without a token")
    func healthz() async throws {
        try await withServer { server in
            let answer = try await server.request(.GET, "/healthz")
            #expect(try answer.decode(HealthResponse.self, expecting: 200).status == "ok")
        }
    }

    @Test("metrics: Prometheus text with the server's metric names, with the metrics token (not a user's)")
    func metrics() async throws {
        try await withServer({ $0.metricsToken = "metrics-secret" }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            try await socket.join(room.id)
            try await socket.sendMessage("one", roomId: room.id)
            try await socket.sendMessage("two", roomId: room.id)
            _ = try await socket.next("message")
            _ = try await socket.next("message")
            _ = try await server.request(.GET, "/api/rooms/nope", token: alice.token)

            let answer = try await server.request(.GET, "/metrics", token: "metrics-secret")
            #expect(answer.status == 200)
            let contentType = try #require(answer.headers.first(name: "Content-Type"))
            #expect(contentType.hasPrefix("text/plain"), "\(contentType)")
            #expect(contentType.contains("version=0.0.4"), "\(contentType)")
            let text = answer.text
            #expect(text.contains("# TYPE"))
            for name in ["switchboard_connections", "switchboard_messages_stored_total", "switchboard_messages_delivered_total", "switchboard_errors_total", "switchboard_delivery_latency_seconds"] {
                #expect(text.contains(name), "no \(name) in /metrics")
            }
            let stored = text.split(separator: "\n").first { $0.hasPrefix("switchboard_messages_stored_total ") }
            #expect(stored.map { $0.hasSuffix(" 2") || $0.hasSuffix(" 2.0") } == true, "\(stored ?? "none")")
            await socket.close()
        }
    }
}

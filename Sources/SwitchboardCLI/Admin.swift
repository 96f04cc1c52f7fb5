import ArgumentParser
import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardStore

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage accounts.", subcommands: [Add.self, List.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an account. A bot gets a token, printed once.",
            discussion: "echo 'a long password' | switchboard users add alice --password-stdin\nswitchboard users add echo-bot --bot"
        )
        @Argument(help: "Username: 1 to 32 of A-Z a-z 0-9 . _ -") var name: String
        @Flag(help: "A bot: logs in with a token instead of a password.") var bot = false
        @Flag(help: "Read the password from the first line of standard input.") var passwordStdin = false
        @Option(help: "Name shown to people (default: the username).") var displayName: String?
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var password: String?
            if passwordStdin {
                password = readLine(strippingNewline: true)
                guard password != nil else { throw ValidationError("--password-stdin: standard input was empty") }
            } else if !bot {
                throw ValidationError("a person needs a password: pipe it in with --password-stdin, or add --bot for a bot")
            }
            try await database.withStore(logger: makeLogger()) { store in
                do {
                    let (user, token) = try await Administration(store: store).addUser(username: name, displayName: displayName, password: password, isBot: bot)
                    print("created \(user.isBot ? "bot" : "user") \(user.username) (id \(user.id))")
                    if let token {
                        print("token id: \(token.id)")
                        print("token: \(token.token)")
                        print("keep the token now: it is stored only as a hash and cannot be shown again")
                    }
                } catch let error as StoreError where error.code == .conflict {
                    throw Failure(description: "the username \(name) is taken")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List accounts.")
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await database.withStore(logger: makeLogger()) { store in
                let users = try await Administration(store: store).users()
                if json {
                    print(try Wire.encodeString(UsersResponse(users: users)))
                    return
                }
                print(table(["ID", "USERNAME", "DISPLAY NAME", "BOT"], users.map { [$0.id, $0.username, $0.displayName, $0.isBot ? "yes" : ""] }))
            }
        }
    }
}

struct Tokens: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage API and session tokens.", subcommands: [List.self, Add.self, Revoke.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never the tokens themselves: only their hashes are kept).")
        @Option(help: "Only this user's tokens (username).") var user: String?
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await database.withStore(logger: makeLogger()) { store in
                let admin = Administration(store: store)
                var userId: String?
                if let user { userId = try await admin.user(named: user).id }
                let tokens = try await admin.tokens(userId: userId)
                let usernames = Dictionary(uniqueKeysWithValues: try await admin.users().map { ($0.id, $0.username) })
                print(table(["ID", "USER", "NAME", "KIND", "EXPIRES", "REVOKED"], tokens.map {
                    [$0.id, usernames[$0.userId] ?? $0.userId, $0.name, $0.kind.rawValue, $0.expiresAt.map(format) ?? "", $0.revokedAt.map(format) ?? ""]
                }))
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API token for a user, printed once.")
        @Argument(help: "Username.") var user: String
        @Option(help: "What the token is for.") var name = "cli"
        @Option(help: "Seconds until it expires, at most 100 years (default: never).") var expiresIn: Int?
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if let expiresIn, !(1...(100 * 365 * 24 * 3600)).contains(expiresIn) {
                throw ValidationError("--expires-in must be 1 to \(100 * 365 * 24 * 3600) seconds (100 years), not \(expiresIn)")
            }
        }

        func run() async throws {
            try await database.withStore(logger: makeLogger()) { store in
                let admin = Administration(store: store)
                let token = try await admin.issueToken(userId: try await admin.user(named: user).id, name: name, expiresInSeconds: expiresIn)
                print("token id: \(token.id)")
                print("token: \(token.token)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token; a running server closes its connections within a second.")
        @Argument(help: "Token id (see 'switchboard tokens list').") var id: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await database.withStore(logger: makeLogger()) { store in
                try await Administration(store: store).revokeToken(id: id)
                print("revoked \(id)")
            }
        }
    }
}

struct Rooms: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage rooms.", subcommands: [Add.self, List.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a group room.")
        @Argument(help: "Room name.") var name: String
        @Flag(help: "Anyone may read and join it.") var `public` = false
        @Option(name: .customLong("member"), help: "A member (username); repeat for more.") var members: [String] = []
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await database.withStore(logger: makeLogger()) { store in
                let room = try await Administration(store: store).addRoom(name: name, isPublic: `public`, memberNames: members)
                print("created room \(room.name) (id \(room.id)), \(room.isPublic ? "public" : "private"), \(room.members.count) members")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List rooms.")
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await database.withStore(logger: makeLogger()) { store in
                let rooms = try await Administration(store: store).rooms()
                if json {
                    print(try Wire.encodeString(rooms))
                    return
                }
                print(table(["ID", "NAME", "KIND", "PUBLIC", "MEMBERS", "MESSAGES"], rooms.map {
                    [$0.id, $0.name, $0.kind.rawValue, $0.isPublic ? "yes" : "", "\($0.members.count)", "\($0.lastSeq)"]
                }))
            }
        }
    }
}

/// Columns padded to their widest cell.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        let line = row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        return String(line.reversed().drop { $0 == " " }.reversed())
    }.joined(separator: "\n")
}

func format(_ milliseconds: Int) -> String {
    Date(timeIntervalSince1970: Double(milliseconds) / 1000).formatted(.iso8601)
}

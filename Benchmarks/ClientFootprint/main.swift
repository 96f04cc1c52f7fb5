import AsyncHTTPClient
import Foundation
import Logging
import SwitchboardClient

// Measures what N bot clients cost in one process: resident memory and threads, before and after
// they connect, follow their rooms and receive a message each.
//
//   switchboard serve --port 3901 --database /tmp/footprint.db &
//   switchboard-client-footprint --server http://127.0.0.1:3901 --clients 50 [--shared]
//
// With --shared, the clients share one HTTPClient (and its event loops); without it, each makes its own
// HTTPClient on the process's shared event-loop group, the default.

/// `VmRSS` and `Threads` of this process, from /proc/self/status (Linux).
func footprint() -> (rssKiB: Int, threads: Int) {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    func field(_ name: String) -> Int {
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int(line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? -1
        }
        return -1
    }
    return (field("VmRSS"), field("Threads"))
}

func argument(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

let server = argument("--server") ?? "http://127.0.0.1:3001"
let count = Int(argument("--clients") ?? "") ?? 50
let shared = CommandLine.arguments.contains("--shared")
var logger = Logger(label: "footprint")
logger.logLevel = .error

let run = UUID().uuidString.prefix(8).lowercased()
// The accounts and a room for all of them, made before measuring.
var tokens: [String] = []
var userIds: [String] = []
for index in 0..<count {
    let answer = try await ChatClient.register(server: server, username: "fp\(run)-\(index)", password: "password-\(run)")
    tokens.append(answer.token)
    userIds.append(answer.user.id)
}
let owner = try await ChatClient.register(server: server, username: "fp\(run)-owner", password: "password-\(run)")
let http = shared ? HTTPClient(eventLoopGroupProvider: .singleton) : nil

let before = footprint()
let started = ContinuousClock.now
try await ChatClient.withClient(configuration: ClientConfiguration(server: server, credentials: .token(owner.token)), logger: logger) { ownerClient in
    let room = try await ownerClient.createRoom(named: "footprint-\(run)", members: userIds)
    try await withThrowingTaskGroup(of: Void.self) { group in
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let (received, receivedContinuation) = AsyncStream.makeStream(of: Void.self)
        for token in tokens {
            group.addTask {
                try await ChatClient.withClient(
                    configuration: ClientConfiguration(server: server, credentials: .token(token)), httpClient: http, logger: logger
                ) { client in
                    for await event in client.followAllRooms() {
                        if case .ready = event { readyContinuation.yield() }
                        if case .message = event {
                            receivedContinuation.yield()
                            break
                        }
                    }
                    // Connected until the measurement is taken (the group is cancelled then).
                    try? await Task.sleep(for: .seconds(3600))
                }
            }
        }
        var readyCount = 0
        for await _ in ready {
            readyCount += 1
            if readyCount == count { break }
        }
        try await ownerClient.send("hello, bots", to: room.id)
        var receivedCount = 0
        for await _ in received {
            receivedCount += 1
            if receivedCount == count { break }
        }
        let after = footprint()
        let elapsed = ContinuousClock.now - started
        print(
            """
            clients: \(count)\(shared ? " (one shared HTTPClient)" : " (an HTTPClient each, shared event loops)")
            connected, caught up and received one message each in \(elapsed)
            RSS: \(before.rssKiB) KiB before, \(after.rssKiB) KiB after: +\(after.rssKiB - before.rssKiB) KiB, \((after.rssKiB - before.rssKiB) / max(1, count)) KiB per client
            threads: \(before.threads) before, \(after.threads) after
            """
        )
        group.cancelAll()
        try await group.waitForAll()
    }
}
if let http { try await http.shutdown().get() }

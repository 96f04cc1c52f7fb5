import Dispatch
import Glibc
import SwitchboardTesting

/// A loopback listening socket whose accept queue is full: the kernel drops a client's SYN, so
/// that its connect hangs until `makeRoom()` (and the SYN's retransmission, about a second later).
/// For what happens while a connection is being made.
final class StalledListener: Sendable {
    let port: Int
    private let listener: Int32
    private let filler: Int32

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        // A backlog of 0 holds one connection: the filler's.
        guard withSocketAddress(&address, { bind(listener, $0, length) }) == 0, listen(listener, 0) == 0,
            withSocketAddress(&address, { getsockname(listener, $0, &length) }) == 0
        else { throw TestFailure("cannot listen on a loopback port (errno \(errno))") }
        let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard withSocketAddress(&address, { connect(filler, $0, length) }) == 0 else {
            throw TestFailure("cannot fill the accept queue (errno \(errno))")
        }
        self.listener = listener
        self.filler = filler
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit {
        close(filler)
        close(listener)
    }

    /// Takes the filler's connection off the queue and returns the next one (the client's) once
    /// it arrives, as a socket whose bytes `readUntilClosed` gives.
    func makeRoom(timeout: Duration = .seconds(10)) async throws -> Int32 {
        let listener = self.listener
        return try await Self.blocking {
            close(accept(listener, nil, nil))
            guard Self.wait(for: listener, timeout: timeout) else { throw TestFailure("no connection came within \(timeout)") }
            return accept(listener, nil, nil)
        }
    }

    /// What the peer of `connection` writes until it closes; fails when it is still open after `timeout`.
    static func readUntilClosed(_ connection: Int32, timeout: Duration = .seconds(10)) async throws -> String {
        try await blocking {
            defer { close(connection) }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                guard wait(for: connection, timeout: timeout) else {
                    throw TestFailure("the connection is still open after \(timeout); it sent: \(String(decoding: received, as: UTF8.self))")
                }
                let count = read(connection, &buffer, buffer.count)
                if count <= 0 { return String(decoding: received, as: UTF8.self) }
                received += buffer[..<count]
            }
        }
    }

    private static func wait(for socket: Int32, timeout: Duration) -> Bool {
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, Int32(timeout.components.seconds * 1000)) == 1
    }

    private static func blocking<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result(catching: work)) }
        }
    }
}

private func withSocketAddress<Result>(_ address: inout sockaddr_in, _ body: (UnsafeMutablePointer<sockaddr>) -> Result) -> Result {
    withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
}

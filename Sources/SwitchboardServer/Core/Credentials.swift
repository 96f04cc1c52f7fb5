import Crypto
import Foundation
import HummingbirdBcrypt
import NIOPosix
import Synchronization
import SwitchboardProtocol

/// Passwords: bcrypt over a SHA-256 pre-hash, on a bounded pool of threads of its own.
///
/// bcrypt reads at most 72 bytes and stops at the first NUL, so two long passwords sharing a
/// prefix would be the same password. It therefore hashes `base64(SHA-256(password))` (44 bytes,
/// no NUL), marked by ``prehashMarker`` so that hashes stored before it still verify the old way.
///
/// Hashing takes tens of milliseconds of one core on purpose: at most `threads` run at once, at
/// most `queueLimit` more wait, and past that the caller gets `rate_limited` instead of a place in
/// an unbounded queue.
final class PasswordHasher: Sendable {
    /// Marks a hash of the pre-hashed password.
    static let prehashMarker = "$sb-sha256"

    private let cost: UInt8
    private let pool: NIOThreadPool
    private let capacity: Int
    private let admitted = Mutex(0)
    private let dummy = Mutex<String?>(nil)
    private let onHash: @Sendable () -> Void

    /// - Parameters:
    ///   - pool: the threads that hash; their number bounds the hashes running at once.
    ///   - capacity: hashes running or waiting, at most.
    ///   - onHash: called for each bcrypt computation (a metric).
    init(cost: UInt8, pool: NIOThreadPool, capacity: Int, onHash: @escaping @Sendable () -> Void = {}) {
        self.cost = min(max(cost, 4), 31)
        self.pool = pool
        self.capacity = max(1, capacity)
        self.onHash = onHash
    }

    /// A new hash of a password.
    func hash(password: String) async throws -> String {
        let cost = self.cost
        return try await run { Self.prehashMarker + Bcrypt.hash(Self.prehash(password), cost: cost) }
    }

    /// Whether a password matches its stored hash (pre-hashed or, from before, plain bcrypt).
    func verify(password: String, hash: String) async throws -> Bool {
        try await run {
            if hash.hasPrefix(Self.prehashMarker) {
                return Bcrypt.verify(Self.prehash(password), hash: String(hash.dropFirst(Self.prehashMarker.count)))
            }
            return Bcrypt.verify(password, hash: hash)
        }
    }

    /// Spends the time of a `verify` without a user: a login with an unknown name takes as long
    /// as one with a wrong password, so that timing does not tell which names exist.
    func verifyAgainstDummy(password: String) async throws {
        let stored = dummy.withLock { $0 }
        let hash: String
        if let stored {
            hash = stored
        } else {
            hash = try await self.hash(password: "not a password of anyone")
            dummy.withLock { $0 = hash }
        }
        _ = try await verify(password: password, hash: hash)
    }

    private func run<Value: Sendable>(_ work: @escaping @Sendable () -> Value) async throws -> Value {
        let isAdmitted = admitted.withLock { count in
            guard count < capacity else { return false }
            count += 1
            return true
        }
        guard isAdmitted else {
            throw ProtocolError(.rateLimited, "the server is busy checking passwords; try again in a second", retryAfterMs: 1000)
        }
        defer { admitted.withLock { $0 -= 1 } }
        onHash()
        return try await pool.runIfActive(work)
    }

    static func prehash(_ password: String) -> String {
        Data(SHA256.hash(data: Array(password.utf8))).base64EncodedString()
    }

    /// The contract's password rule, and no NUL: C libraries, bcrypt among them, end text there.
    static func validate(password: String) throws(ProtocolError) {
        try Validation.password(password)
        guard !password.unicodeScalars.contains("\u{0}") else {
            throw ProtocolError(.invalid, "password must not contain U+0000 (NUL)")
        }
    }
}

/// Tokens: 256 random bits, stored as SHA-256.
enum Credentials {
    /// The longest life a token may be given: 100 years, far below any overflow.
    static let maxLifetimeSeconds = 100 * 365 * 24 * 3600

    /// When a token made at `now` expires after `seconds`; `invalid` when out of range.
    static func expiry(now: Int, seconds: Int, field: String = "expiresInSeconds") throws(ProtocolError) -> Int {
        guard (1...maxLifetimeSeconds).contains(seconds) else {
            throw ProtocolError(.invalid, "\(field) must be 1 to \(maxLifetimeSeconds) (100 years)")
        }
        return now + seconds * 1000
    }

    /// A new token: `sb_` and 256 random bits in URL-safe base64. Only its hash is ever stored.
    static func newToken() -> (token: String, hash: [UInt8]) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let encoded = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        let token = "sb_" + encoded
        return (token, hash(token: token))
    }

    /// SHA-256 of a token, the form it is stored and looked up in.
    static func hash(token: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(token.utf8)))
    }
}

import Crypto
import Foundation
import HummingbirdBcrypt
import NIOPosix

/// Passwords and tokens: bcrypt for the one, 256 random bits stored as SHA-256 for the other.
struct Credentials: Sendable {
    let bcryptCost: UInt8

    /// Hashes a password with bcrypt, off the event loops (it takes tens of milliseconds on purpose).
    func hash(password: String) async throws -> String {
        let cost = bcryptCost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    /// Checks a password against its bcrypt hash, off the event loops.
    func verify(password: String, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
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

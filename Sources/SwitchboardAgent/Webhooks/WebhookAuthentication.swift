import Crypto
import Foundation

/// How a webhook proves it comes from who holds the secret.
///
/// - ``hmac``: GitHub's scheme. The sender puts `sha256=` and the hexadecimal HMAC-SHA256 of the
///   raw body, keyed with the secret, in `X-Hub-Signature-256`. The secret never travels.
/// - ``bearer``: the sender puts `Authorization: Bearer <secret>`: simpler, for senders that
///   cannot sign (use it only over TLS or on loopback).
///
/// Both compare in constant time, so the time of an answer tells nothing about the secret.
///
/// ```swift
/// let check = WebhookAuthentication.hmac(secret: "s3cret")
/// check.verify(headers: ["x-hub-signature-256": "sha256=…"], body: body)   // .accepted or .rejected(reason)
/// ```
public enum WebhookAuthentication: Sendable, Hashable {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    case hmac(secret: String)
    /// `Authorization: Bearer <secret>`.
    case bearer(secret: String)

    /// The header GitHub signs with.
    public static let signatureHeader = "x-hub-signature-256"

    /// The outcome of a check.
    public enum Verdict: Sendable, Hashable {
        /// The request holds the right proof.
        case accepted
        /// It does not; the reason is for the log, not for the sender.
        case rejected(String)
    }

    /// Checks a request's headers (names in lower case) and raw body.
    public func verify(headers: [String: String], body: some Collection<UInt8>) -> Verdict {
        switch self {
        case .hmac(let secret):
            guard let header = headers[Self.signatureHeader] else {
                return .rejected("no \(Self.signatureHeader) header")
            }
            guard header.hasPrefix("sha256="), let signature = Self.bytes(hex: header.dropFirst("sha256=".count)),
                signature.count == SHA256.byteCount
            else {
                return .rejected("\(Self.signatureHeader) is not sha256= and 64 hexadecimal digits")
            }
            let key = SymmetricKey(data: Array(secret.utf8))
            return HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: Array(body), using: key)
                ? .accepted : .rejected("the signature does not match the body and the secret")
        case .bearer(let secret):
            guard let header = headers["authorization"] else { return .rejected("no Authorization header") }
            let prefix = "bearer "
            guard header.lowercased().hasPrefix(prefix) else { return .rejected("the Authorization header is not Bearer") }
            let given = header.dropFirst(prefix.count).trimmingCharacters(in: .whitespaces)
            return Self.constantTimeEqual(given, secret) ? .accepted : .rejected("the bearer secret does not match")
        }
    }

    /// The signature header's value for `body` under `secret`, as GitHub computes it: for senders and tests.
    public static func signature(of body: some Collection<UInt8>, secret: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array(body), using: SymmetricKey(data: Array(secret.utf8)))
        return "sha256=" + code.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// Compares the digests of both strings, so that neither their contents nor their lengths show
    /// in the time taken.
    static func constantTimeEqual(_ left: String, _ right: String) -> Bool {
        let leftDigest = SHA256.hash(data: Array(left.utf8))
        let rightDigest = SHA256.hash(data: Array(right.utf8))
        var difference: UInt8 = 0
        for (a, b) in zip(leftDigest, rightDigest) { difference |= a ^ b }
        return difference == 0
    }

    private static func bytes(hex: Substring) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(ofHexDigit: digits[index]), let low = value(ofHexDigit: digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func value(ofHexDigit digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Opaque ids: a short prefix saying what they name, then 20 random base62 characters (about 119 bits).
package enum Ids {
    /// ASCII digits and letters, as bytes: a string is built from them in one go.
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// `prefix` and 20 random characters of `alphabet`.
    ///
    /// Draws the randomness in 8-byte words, keeping the bytes below 248 (a multiple of 62, so
    /// that each character is equally likely): about 3 calls to the system's generator instead
    /// of one per character, each of which is a `getrandom` system call.
    package static func make(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        appendRandom(20, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `prefix`, 8 characters of the time in milliseconds, then 12 random characters: ids that
    /// sort by time, so that a batch of new messages adds to the end of the id index (a page or
    /// two to write per commit) instead of to as many random pages as it has messages, each of
    /// which the commit writes whole to the WAL. Still opaque and unique (62^12 per millisecond).
    package static func makeOrdered(_ prefix: String, milliseconds: Int) -> String {
        var bytes = Array(prefix.utf8)
        bytes.reserveCapacity(bytes.count + 20)
        let timeStart = bytes.count
        var value = max(milliseconds, 0)
        for _ in 0..<8 {
            bytes.append(alphabet[value % alphabet.count])
            value /= alphabet.count
        }
        bytes[timeStart...].reverse()
        appendRandom(12, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func appendRandom(_ count: Int, to bytes: inout [UInt8]) {
        var generator = SystemRandomNumberGenerator()
        let end = bytes.count + count
        while bytes.count < end {
            var word = generator.next()
            for _ in 0..<8 where bytes.count < end {
                let byte = Int(word & 0xFF)
                word >>= 8
                if byte < 248 { bytes.append(alphabet[byte % alphabet.count]) }
            }
        }
    }
}

/// Opaque ids: a short prefix saying what they name, then 20 random base62 characters (about 119 bits).
package enum Ids {
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    /// `prefix` and 20 random characters of `alphabet`.
    ///
    /// Draws the randomness in 8-byte words, keeping the bytes below 248 (a multiple of 62, so
    /// that each character is equally likely): about 3 calls to the system's generator instead
    /// of one per character, each of which is a `getrandom` system call.
    package static func make(_ prefix: String) -> String {
        prefix + String(randomCharacters(20))
    }

    /// `prefix`, 8 characters of the time in milliseconds, then 12 random characters: ids that
    /// sort by time, so that a batch of new messages adds to the end of the id index (a page or
    /// two to write per commit) instead of to as many random pages as it has messages, each of
    /// which the commit writes whole to the WAL. Still opaque and unique (62^12 per millisecond).
    package static func makeOrdered(_ prefix: String, milliseconds: Int) -> String {
        var time: [Character] = []
        var value = max(milliseconds, 0)
        for _ in 0..<8 {
            time.append(alphabet[value % alphabet.count])
            value /= alphabet.count
        }
        return prefix + String(time.reversed()) + String(randomCharacters(12))
    }

    private static func randomCharacters(_ count: Int) -> [Character] {
        var generator = SystemRandomNumberGenerator()
        var characters: [Character] = []
        characters.reserveCapacity(count)
        while characters.count < count {
            var word = generator.next()
            for _ in 0..<8 where characters.count < count {
                let byte = Int(word & 0xFF)
                word >>= 8
                if byte < 248 { characters.append(alphabet[byte % alphabet.count]) }
            }
        }
        return characters
    }
}

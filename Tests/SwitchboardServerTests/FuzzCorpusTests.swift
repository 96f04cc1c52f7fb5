import Foundation
import Testing

@testable import SwitchboardServer

@Suite("Fuzz corpus", .timeLimit(.minutes(1)))
struct FuzzCorpusTests {
    /// Every input of `Tests/Fuzz/corpus` through the fuzz target's checks (`scripts/fuzz.sh`
    /// runs the same entry point under libFuzzer for as long as asked).
    @Test("every corpus input goes through the decoders without a crash or a disagreement")
    func corpus() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fuzz/corpus").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(files.count >= 20, "corpus missing at \(folder.path)")
        for file in files {
            InputFuzzing.check(Array(try Data(contentsOf: folder.appendingPathComponent(file))))
        }
    }

    @Test("a seeded stream of mutated frames goes through the same checks")
    func mutations() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fuzz/corpus").standardized
        let seeds = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
            .map { Array(try Data(contentsOf: folder.appendingPathComponent($0))) }
        var generator = SplitMix64(seed: 8)
        let alphabet = Array(#"{}[]":,\u0d8 0-9aeE+."#.utf8) + [0x00, 0x1B, 0x7F, 0xC3, 0xF0, 0x9F, 0xFF]
        for _ in 0..<5_000 {
            var bytes = seeds[Int(generator.next() % UInt64(seeds.count))]
            for _ in 0..<(1 + generator.next() % 4) where !bytes.isEmpty {
                let index = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 3 {
                case 0: bytes[index] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: index)
                default: bytes.insert(alphabet[Int(generator.next() % UInt64(alphabet.count))], at: index)
                }
            }
            InputFuzzing.check(bytes)
        }
    }
}

/// A small deterministic generator, so that a failure repeats.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

import Histogram

/// Latency histograms in microseconds, up to ten minutes, three significant digits.
func makeLatencyHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
}

extension Histogram<UInt64> {
    /// Records a duration given in nanoseconds, in microseconds, clamped to the histogram's range.
    @inline(__always)
    mutating func recordNanoseconds(_ nanoseconds: UInt64) {
        let micros = Swift.max(1, Swift.min(nanoseconds / 1000, highestTrackableValue))
        _ = record(micros)
    }
}

/// A latency distribution, in milliseconds, as reports show it.
struct LatencySummary: Codable, Sendable {
    var count: UInt64
    var p50: Double
    var p90: Double
    var p99: Double
    var p999: Double
    var max: Double
    var mean: Double

    init(_ histogram: Histogram<UInt64>) {
        count = histogram.totalCount
        func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }
        if count == 0 {
            p50 = 0; p90 = 0; p99 = 0; p999 = 0; max = 0; mean = 0
        } else {
            p50 = ms(histogram.valueAtPercentile(50))
            p90 = ms(histogram.valueAtPercentile(90))
            p99 = ms(histogram.valueAtPercentile(99))
            p999 = ms(histogram.valueAtPercentile(99.9))
            max = ms(histogram.max)
            mean = histogram.mean / 1000
        }
    }

    /// `p50 0.41  p90 0.80  p99 2.10  p99.9 4.00  max 9.1 ms`.
    var text: String {
        guard count > 0 else { return "no samples" }
        return "p50 \(format(p50))  p90 \(format(p90))  p99 \(format(p99))  p99.9 \(format(p999))  max \(format(max)) ms"
    }
}

/// A number of milliseconds with the precision a reader wants.
func format(_ milliseconds: Double) -> String {
    if milliseconds >= 100 { return String(format: "%.0f", milliseconds) }
    if milliseconds >= 10 { return String(format: "%.1f", milliseconds) }
    return String(format: "%.2f", milliseconds)
}

/// `123,456`.
func grouped(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var result = ""
    for (index, character) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
        result.append(character)
    }
    return value < 0 ? "-" + result : result
}

func grouped(_ value: Double) -> String { grouped(Int(value.rounded())) }

/// A growable set of small integers (message numbers), one bit each.
struct BitSet: Sendable {
    private(set) var words: [UInt64] = []

    /// Inserts `value`; false when it was already there.
    @inline(__always)
    mutating func insert(_ value: Int) -> Bool {
        let word = value >> 6
        if word >= words.count {
            words.append(contentsOf: repeatElement(0, count: Swift.max(word + 1 - words.count, words.count)))
        }
        let bit: UInt64 = 1 << UInt64(value & 63)
        let old = words[word]
        words[word] = old | bit
        return old & bit == 0
    }

    func contains(_ value: Int) -> Bool {
        let word = value >> 6
        return word < words.count && words[word] & (1 << UInt64(value & 63)) != 0
    }

    var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// Members of `self` that are not in `other`.
    func subtractingCount(_ other: BitSet) -> Int {
        var total = 0
        for index in words.indices {
            let theirs = index < other.words.count ? other.words[index] : 0
            total += (words[index] & ~theirs).nonzeroBitCount
        }
        return total
    }
}

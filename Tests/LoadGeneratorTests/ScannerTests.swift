import NIOCore
import Testing

@testable import LoadGenerator

@Suite("Reading server frames without decoding them", .timeLimit(.minutes(1)))
struct ScannerTests {
    private func scan<Result>(_ text: String, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        Array(text.utf8).withUnsafeBytes(body)
    }

    @Test("top-level fields are found in any order, with any white space")
    func envelopeFields() {
        let text = #" { "data" : {"content":"a \"quoted\" }{ text","seq":12} ,"ref":"42", "type":"ack","roomId":"r_1","timestamp":1} "#
        scan(text) { bytes in
            let fields = JSONScan.envelope(bytes)
            #expect(fields != nil)
            #expect(JSONScan.stringEquals(bytes, fields?.type, "ack"))
            #expect(JSONScan.integer(bytes, fields?.ref) == 42)
            #expect(JSONScan.string(bytes, fields?.roomId) == "r_1")
            let data = JSONScan.data(bytes, fields!.data!)
            #expect(JSONScan.integer(bytes, data.seq) == 12)
            #expect(JSONScan.string(bytes, data.content) == #"a \"quoted\" }{ text"#)
        }
    }

    @Test("a string ends at the first quote after an even number of backslashes")
    func escapes() {
        let text = #"{"data":{"content":"ends in a backslash \\","meta":"\\\"x","seq":3},"type":"message"}"#
        scan(text) { bytes in
            let fields = JSONScan.envelope(bytes)
            #expect(JSONScan.stringEquals(bytes, fields?.type, "message"))
            let data = JSONScan.data(bytes, fields!.data!)
            #expect(JSONScan.string(bytes, data.content) == #"ends in a backslash \\"#)
            #expect(JSONScan.integer(bytes, data.seq) == 3)
        }
        scan(#"{"type":"ack\"}"#) { bytes in #expect(JSONScan.envelope(bytes) == nil) }
    }

    @Test("nested objects and arrays are skipped whole")
    func nested() {
        let text = #"{"type":"message","data":{"meta":{"type":"x","a":[1,{"b":"}"}]},"content":"3.7.123456.xx","seq":5},"userId":"u"}"#
        scan(text) { bytes in
            let fields = JSONScan.envelope(bytes)!
            #expect(JSONScan.stringEquals(bytes, fields.type, "message"))
            let data = JSONScan.data(bytes, fields.data!)
            let marker = ChatClient.marker(bytes, data.content)
            #expect(marker?.sender == 3)
            #expect(marker?.number == 7)
            #expect(marker?.sentAt == 123_456)
        }
    }

    @Test("what is not an object, or is cut short, is refused")
    func malformed() {
        for text in ["", "[]", "{", #"{"type":"ack""#, #"{"type" "ack"}"#, "null"] {
            scan(text) { bytes in #expect(JSONScan.envelope(bytes) == nil, "\(text)") }
        }
        scan("{}") { bytes in #expect(JSONScan.envelope(bytes) != nil) }
    }

    @Test("content that is not a marker is not taken for one")
    func foreignContent() {
        for content in [#""hello""#, #""1.2""#, #""1.2.x.""#, #""..""#, "12"] {
            scan(content) { bytes in
                #expect(ChatClient.marker(bytes, Span(start: 0, end: bytes.count)) == nil, "\(content)")
            }
        }
    }

    @Test("decimal integers are written without String")
    func decimals() {
        for value: UInt64 in [0, 7, 10, 99, 100, 123_456_789, UInt64.max] {
            var buffer = ByteBuffer()
            buffer.writeDecimal(value)
            #expect(String(buffer: buffer) == "\(value)")
        }
    }

    @Test("bit sets count members, repeats and differences")
    func bitSets() {
        var a = BitSet()
        let first = a.insert(3)
        let again = a.insert(3)
        let far = a.insert(700)
        #expect(first)
        #expect(!again)
        #expect(far)
        #expect(a.contains(700) && !a.contains(699))
        var b = BitSet()
        _ = b.insert(3)
        #expect(a.count == 2)
        #expect(a.subtractingCount(b) == 1)
        #expect(b.subtractingCount(a) == 0)
    }

    @Test("latency summaries read the histogram in milliseconds")
    func latency() {
        var histogram = makeLatencyHistogram()
        for micros in 1...1000 { histogram.recordNanoseconds(UInt64(micros) * 1000) }
        let summary = LatencySummary(histogram)
        #expect(summary.count == 1000)
        #expect(abs(summary.p50 - 0.5) < 0.01)
        #expect(abs(summary.p99 - 0.99) < 0.01)
        #expect(abs(summary.max - 1.0) < 0.01)
    }
}

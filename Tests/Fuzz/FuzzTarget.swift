// libFuzzer's entry point; built by scripts/fuzz.sh together with the server's input decoders
// (Sources/SwitchboardServer/Codec/InputFuzzing.swift, MessageFrameScanner.swift).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    InputFuzzing.check(bytes)
    return 0
}

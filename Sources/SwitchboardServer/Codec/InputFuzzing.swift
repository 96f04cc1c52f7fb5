import SwitchboardProtocol

/// One input through every decoder of what clients send, for the fuzzer (`scripts/fuzz.sh`) and
/// for the test that replays its corpus (`Tests/Fuzz/corpus`).
///
/// Beyond not crashing, it checks the one property two decoders share: when the fast message
/// scanner takes a frame, its answer is `IncomingFrame`'s. A difference stops the process, so
/// that the fuzzer keeps the input.
///
/// This file and `MessageFrameScanner.swift` are compiled on their own into the fuzz target:
/// keep them free of the rest of the server.
enum InputFuzzing {
    static func check(_ bytes: [UInt8]) {
        let limits = Limits()
        let frame = IncomingFrame(bytes: bytes, limits: limits)
        if let text = String(validating: bytes, as: UTF8.self), let fast = MessageFrameScanner.scan(text, limits: limits) {
            let same: Bool =
                switch (fast.request, frame.request) {
                case (.success(let a), .success(let b)): a == b
                case (.failure(let a), .failure(let b)): a.code == b.code
                default: false
                }
            if !same || fast.ref != frame.ref || fast.roomId != frame.roomId {
                fatalError("the message scanner and IncomingFrame disagree on \(text.debugDescription): \(fast) against \(frame)")
            }
        }
        // The HTTP bodies, decoded and checked as the routes do.
        if let register = try? Wire.decode(RegisterRequest.self, from: bytes) {
            _ = try? Validation.username(register.username)
            _ = try? Validation.password(register.password)
            _ = register.displayName.map { try? Validation.displayName($0, limits: limits) }
        }
        if let login = try? Wire.decode(LoginRequest.self, from: bytes) {
            _ = try? Validation.username(login.username)
        }
        if let token = try? Wire.decode(CreateTokenRequest.self, from: bytes) {
            _ = try? Validation.displayName(token.name, limits: limits)
        }
        if let room = try? Wire.decode(CreateRoomRequest.self, from: bytes) {
            _ = try? Validation.roomName(room.name, limits: limits)
        }
        _ = try? Wire.decode(UserIdRequest.self, from: bytes)
        if let value = try? Wire.decode(JSONValue.self, from: bytes) {
            _ = try? SendMessageData(checking: value, limits: limits)
        }
    }
}

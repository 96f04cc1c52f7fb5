/// A request from a client, checked against the contract's rules of shape.
///
/// Parsing is lenient where the contract says a field is ignored (`timestamp`, `userId`) and
/// strict everywhere else, so that a server answers each bad envelope with the right code.
public enum ClientRequest: Sendable, Hashable {
    case join(roomId: String, since: Int?)
    case leave(roomId: String)
    case message(roomId: String, SendMessageData)
    case typing(roomId: String, isTyping: Bool)
    case reaction(roomId: String, ReactionData)
    case ping(JSONValue?)
}

/// One text frame received from a client: its correlation id and room, and the request or why it is refused.
public struct IncomingFrame: Sendable {
    /// The client's `ref`, when it was a string.
    public var ref: String?
    /// The `roomId`, when it was a string.
    public var roomId: String?
    /// The request, or the error to answer with.
    public var request: Result<ClientRequest, ProtocolError>

    /// Parses and checks one frame.
    public init(bytes: some Collection<UInt8>, limits: Limits = Limits()) {
        let head: Head
        do {
            head = try Wire.decode(Head.self, from: bytes)
        } catch {
            // A `\uD800` without its pair is the one flaw that makes a decoder refuse JSON that is
            // otherwise whole; read `ref` and `roomId` past it, so that the answer carries them.
            if let repaired = Self.replacingLoneSurrogates(in: bytes), let head = try? Wire.decode(Head.self, from: repaired) {
                self.ref = head.ref?.stringValue
                self.roomId = head.roomId?.stringValue
                self.request = .failure(ProtocolError(
                    .invalid, "the frame holds a \\u escape of a lone surrogate, which is no character; escape the pair, or send the character itself"))
                return
            }
            self.ref = nil
            self.roomId = nil
            self.request = .failure(ProtocolError(.invalid, "the frame is not a JSON object"))
            return
        }
        self.ref = head.ref?.stringValue
        self.roomId = head.roomId?.stringValue
        self.request = Result { () throws(ProtocolError) in try Self.request(from: head, limits: limits) }
    }

    /// The bytes with each `\u` escape of an unpaired surrogate replaced by `\uFFFD` (the same
    /// length), or nil when there is none.
    static func replacingLoneSurrogates(in bytes: some Collection<UInt8>) -> [UInt8]? {
        var bytes = Array(bytes)
        func surrogate(at index: Int) -> UInt16? {
            guard index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u"),
                let value = UInt16(String(decoding: bytes[(index + 2)..<(index + 6)], as: UTF8.self), radix: 16),
                (0xD800...0xDFFF).contains(value)
            else { return nil }
            return value
        }
        var changed = false
        var inString = false
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if !inString {
                if byte == UInt8(ascii: "\"") { inString = true }
                index += 1
            } else if byte == UInt8(ascii: "\"") {
                inString = false
                index += 1
            } else if byte != UInt8(ascii: "\\") {
                index += 1
            } else if let value = surrogate(at: index) {
                if value < 0xDC00, let low = surrogate(at: index + 6), low >= 0xDC00 {
                    index += 12
                    continue
                }
                bytes.replaceSubrange((index + 2)..<(index + 6), with: Array("FFFD".utf8))
                changed = true
                index += 6
            } else {
                index += 2
            }
        }
        return changed ? bytes : nil
    }

    /// Every field a server reads, each as whatever JSON it holds, so that types are checked here.
    private struct Head: Decodable {
        var type: JSONValue?
        var roomId: JSONValue?
        var data: JSONValue?
        var ref: JSONValue?
    }

    private static func request(from head: Head, limits: Limits) throws(ProtocolError) -> ClientRequest {
        guard let type = head.type?.stringValue else { throw ProtocolError(.invalid, "type must be a string") }
        if let ref = head.ref, ref != .null, ref.stringValue == nil { throw ProtocolError(.invalid, "ref must be a string") }
        if type == EnvelopeType.ping.rawValue { return .ping(head.data) }

        let known: Set<String> = ["join", "leave", "message", "typing", "reaction"]
        guard known.contains(type) else { throw ProtocolError(.unknownType, "unknown type '\(type)'") }
        guard let roomValue = head.roomId, roomValue != .null else { throw ProtocolError(.invalid, "roomId is required") }
        guard let roomId = roomValue.stringValue else { throw ProtocolError(.invalid, "roomId must be a string") }
        let fields = DataFields(head.data)

        switch type {
        case "join":
            if let data = head.data, data != .null, data.objectValue == nil { throw ProtocolError(.invalid, "data must be an object") }
            let since = try fields.optionalInteger("since")
            if let since, since < 0 { throw ProtocolError(.invalid, "since must not be negative") }
            return .join(roomId: roomId, since: since)
        case "leave":
            return .leave(roomId: roomId)
        case "message":
            return .message(roomId: roomId, try SendMessageData(checking: head.data, limits: limits))
        case "typing":
            try fields.requireObject()
            return .typing(roomId: roomId, isTyping: try fields.bool("isTyping"))
        default:
            try fields.requireObject()
            let messageId = try fields.string("messageId")
            let reaction = try fields.string("reaction")
            try Validation.reaction(reaction, limits: limits)
            let action = ReactionAction(rawValue: try fields.string("action"))
            guard action == .add || action == .remove else {
                throw ProtocolError(.invalid, "action must be 'add' or 'remove'")
            }
            return .reaction(roomId: roomId, ReactionData(messageId: messageId, reaction: reaction, action: action))
        }
    }
}

extension SendMessageData {
    /// Checks a `message` envelope's data or an HTTP body against the contract: types, content
    /// length after trimming, `clientId` and `meta` sizes. The content is stored trimmed.
    public init(checking data: JSONValue?, limits: Limits = Limits()) throws(ProtocolError) {
        let fields = DataFields(data)
        try fields.requireObject()
        let content = try Validation.content(try fields.string("content"), limits: limits)
        let clientId = try fields.optionalString("clientId")
        if let clientId { try Validation.clientId(clientId, limits: limits) }
        let replyTo = try fields.optionalString("replyTo")
        var meta: JSONValue? = nil
        if let value = fields.value("meta"), value != .null {
            guard case .object = value else { throw ProtocolError(.invalid, "meta must be an object") }
            let size = (try? Wire.encode(value).count) ?? Int.max
            guard size <= limits.maxMetaBytes else {
                throw ProtocolError(.invalid, "meta must be at most \(limits.maxMetaBytes) bytes of JSON (it has \(size))")
            }
            meta = value
        }
        self.init(content: content, clientId: clientId, replyTo: replyTo, meta: meta)
    }
}

/// Typed access to the fields of a `data` object, with the contract's error for each mistake.
struct DataFields {
    let object: [String: JSONValue]?
    let isObject: Bool

    init(_ data: JSONValue?) {
        self.object = data?.objectValue
        self.isObject = data?.objectValue != nil
    }

    func requireObject() throws(ProtocolError) {
        guard isObject else { throw ProtocolError(.invalid, "data must be an object") }
    }

    func value(_ key: String) -> JSONValue? { object?[key] }

    func string(_ key: String) throws(ProtocolError) -> String {
        guard let value = object?[key], value != .null else { throw ProtocolError(.invalid, "data.\(key) is required") }
        guard let string = value.stringValue else { throw ProtocolError(.invalid, "data.\(key) must be a string, not \(value.typeName)") }
        return string
    }

    func optionalString(_ key: String) throws(ProtocolError) -> String? {
        guard let value = object?[key], value != .null else { return nil }
        guard let string = value.stringValue else { throw ProtocolError(.invalid, "data.\(key) must be a string, not \(value.typeName)") }
        return string
    }

    func bool(_ key: String) throws(ProtocolError) -> Bool {
        guard let value = object?[key], value != .null else { throw ProtocolError(.invalid, "data.\(key) is required") }
        guard let bool = value.boolValue else { throw ProtocolError(.invalid, "data.\(key) must be a boolean, not \(value.typeName)") }
        return bool
    }

    func optionalInteger(_ key: String) throws(ProtocolError) -> Int? {
        guard let value = object?[key], value != .null else { return nil }
        guard let integer = value.integerValue else { throw ProtocolError(.invalid, "data.\(key) must be an integer, not \(value.typeName)") }
        return Int(integer)
    }
}

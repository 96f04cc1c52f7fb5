/// One frame received from a server, decoded into what it means.
///
/// ```swift
/// switch try ServerEvent(bytes: frame) {
/// case .message(let message): print(message.content)
/// case .ack(let ack): ...
/// default: break
/// }
/// ```
public enum ServerEvent: Sendable {
    case message(Message)
    case typing(roomId: String, userId: String, isTyping: Bool)
    case reaction(roomId: String, userId: String, ReactionEventData)
    case presence(userId: String, status: PresenceStatus)
    case join(roomId: String, user: User)
    case leave(roomId: String, user: User)
    case room(RoomEventData)
    /// The success answer to a request; `data` is decoded by the caller, who knows what it asked.
    case ack(Reply)
    /// The failure answer to a request, or an error about no request.
    case error(ref: String?, roomId: String?, ProtocolError)
    case pong(JSONValue?)
    /// A type this library does not know: a newer server's extension.
    case other(type: EnvelopeType, Envelope<JSONValue>)

    /// An `ack`: its correlation id and the raw frame, to decode typed data from.
    public struct Reply: Sendable {
        public var ref: String?
        public var roomId: String?
        /// The whole frame as received.
        public var frame: [UInt8]

        /// Decodes the ack's `data` as the answer to a known request.
        public func decode<Payload: Codable & Sendable>(_ type: Payload.Type) throws -> Payload {
            guard let data = try Wire.decode(Envelope<Payload>.self, from: frame).data else {
                throw ProtocolError(.invalid, "ack has no data")
            }
            return data
        }
    }

    private struct Head: Decodable {
        var type: EnvelopeType
        var roomId: String?
        var userId: String?
        var ref: String?
    }

    /// Decodes one frame.
    public init(bytes: some Collection<UInt8>) throws {
        let frame = Array(bytes)
        let head = try Wire.decode(Head.self, from: frame)
        func data<Payload: Codable & Sendable>(_ type: Payload.Type) throws -> Payload {
            guard let data = try Wire.decode(Envelope<Payload>.self, from: frame).data else {
                throw ProtocolError(.invalid, "\(head.type) event has no data")
            }
            return data
        }
        let roomId = head.roomId ?? ""
        let userId = head.userId ?? ""
        switch head.type {
        case .message: self = .message(try data(Message.self))
        case .typing: self = .typing(roomId: roomId, userId: userId, isTyping: try data(TypingData.self).isTyping)
        case .reaction: self = .reaction(roomId: roomId, userId: userId, try data(ReactionEventData.self))
        case .presence: self = .presence(userId: userId, status: try data(PresenceData.self).status)
        case .join: self = .join(roomId: roomId, user: try data(MemberData.self).user)
        case .leave: self = .leave(roomId: roomId, user: try data(MemberData.self).user)
        case .room: self = .room(try data(RoomEventData.self))
        case .ack: self = .ack(Reply(ref: head.ref, roomId: head.roomId, frame: frame))
        case .error: self = .error(ref: head.ref, roomId: head.roomId, try data(ProtocolError.self))
        case .pong: self = .pong(try Wire.decode(Envelope<JSONValue>.self, from: frame).data)
        default: self = .other(type: head.type, try Wire.decode(Envelope<JSONValue>.self, from: frame))
        }
    }
}

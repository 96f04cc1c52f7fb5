import SwitchboardClient
import SwitchboardProtocol

extension ExecRequest {
    /// Carries out the action as `client`'s user; the outcome is what the program reads in its
    /// `result` line.
    public func perform(as client: ChatClient) async -> ExecOutcome {
        do {
            switch self {
            case .send(_, let roomId, let content, let replyTo, let meta):
                let message = try await client.send(content, to: roomId, replyTo: replyTo, meta: meta)
                return .success(["message": JSONValue(encoding: message)])
            case .react(_, let roomId, let messageId, let reaction, let action):
                let counts = try await client.react(reaction, to: messageId, in: roomId, action: action)
                return .success(["reactions": .object(counts.mapValues { .integer(Int64($0)) })])
            case .typing(_, let roomId, let isTyping):
                return await client.sendTyping(isTyping, in: roomId)
                    ? .success([:]) : .failure(code: "unavailable", message: "typing needs the WebSocket, and the bot is not connected by one")
            case .hello, .log:
                return .success([:])
            }
        } catch let error as ClientError {
            return .failure(code: error.protocolError?.code.rawValue ?? error.code.description, message: error.message)
        } catch {
            return .failure(code: "internal", message: "\(error)")
        }
    }
}

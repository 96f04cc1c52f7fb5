import Hummingbird
import Logging
import NIOCore
import SwitchboardProtocol

/// The HTTP side of incoming webhooks: a `POST` to a hook's path, checked by ``WebhookReceiver``,
/// becomes a message that `post` sends.
///
/// Answers: 201 `{"message": …}` once the server stored the message; 401 for a missing or wrong
/// signature or secret (logged with the reason, nothing posted); 404 for a path without a hook;
/// 413 for a body over the limit; 400 for a body the hook cannot read; 502 when the message could
/// not be posted (the bot is not a member of the room, the server refused it), so that the sender
/// tries again later. Errors have the protocol's shape, `{"error":{"code":…,"message":…}}`.
public struct WebhookListener: Sendable {
    /// Sends `text` for `hook`, returning the stored message.
    public typealias Post = @Sendable (_ hook: WebhookConfiguration.Hook, _ text: String) async throws -> Message

    /// The hooks and where to listen.
    public let configuration: WebhookConfiguration
    let logger: Logger
    let post: Post

    /// A listener for `configuration`'s hooks.
    public init(configuration: WebhookConfiguration, logger: Logger, post: @escaping Post) {
        self.configuration = configuration
        self.logger = logger
        self.post = post
    }

    /// Listens until the task is cancelled.
    ///
    /// - Parameter onListening: called with the port once it accepts connections (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let receiver = WebhookReceiver(configuration: configuration)
        let router = Router()
        router.post("**") { [logger, post, configuration] request, context in
            let path = request.uri.path
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: configuration.maxBodyBytes)
            } catch {
                return errorResponse(status: 413, code: .tooLarge, message: "the body is over \(configuration.maxBodyBytes) bytes")
            }
            switch receiver.receive(path: path, headers: headers, body: Array(buffer: body)) {
            case .refuse(let refusal):
                if let reason = refusal.logReason {
                    logger.info("webhook refused: \(reason)", metadata: ["webhook.path": "\(path)", "webhook.status": "\(refusal.status)"])
                }
                return errorResponse(status: refusal.status, code: refusal.code, message: refusal.message)
            case .post(let hook, let text):
                do {
                    let message = try await post(hook, text)
                    logger.debug("webhook posted", metadata: ["webhook.path": "\(path)", "webhook.room": "\(message.roomId)"])
                    return try jsonResponse(["message": message], status: .created)
                } catch {
                    logger.info("webhook not posted: \(error)", metadata: ["webhook.path": "\(path)", "webhook.room": "\(hook.room)"])
                    return errorResponse(status: 502, code: .internal, message: "the message could not be posted to \(hook.room): \(error)")
                }
            }
        }
        try await serveHTTP(
            router: router, host: configuration.host, port: configuration.port, name: "webhooks", logger: logger, onListening: onListening
        )
    }
}

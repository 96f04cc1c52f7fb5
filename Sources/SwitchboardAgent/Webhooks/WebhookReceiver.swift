import SwitchboardProtocol

/// Decides what a webhook request comes to, without any I/O: which hook, whether its proof holds,
/// and the text to post.
///
/// ```swift
/// let receiver = WebhookReceiver(configuration: configuration)
/// switch receiver.receive(path: "/github", headers: headers, body: body) {
/// case .post(let hook, let text): // send `text` to hook.room
/// case .refuse(let refusal): // answer refusal.status with refusal.code and refusal.message
/// }
/// ```
public struct WebhookReceiver: Sendable {
    /// What a request comes to.
    public enum Decision: Sendable, Hashable {
        /// Post `text` for `hook`.
        case post(WebhookConfiguration.Hook, text: String)
        /// Answer with an error and post nothing.
        case refuse(Refusal)
    }

    /// An error answer: an HTTP status, a protocol error code, and a message. `logReason` holds
    /// what the log says and the sender is not told (why a signature failed).
    public struct Refusal: Sendable, Hashable {
        public var status: Int
        public var code: ErrorCode
        public var message: String
        public var logReason: String?
    }

    /// The configuration.
    public let configuration: WebhookConfiguration
    /// The protocol's limits, for the length of what is posted.
    public let limits: Limits
    private let hooks: [String: WebhookConfiguration.Hook]

    /// A receiver of `configuration`'s hooks.
    public init(configuration: WebhookConfiguration, limits: Limits = Limits()) {
        self.configuration = configuration
        self.limits = limits
        self.hooks = Dictionary(configuration.hooks.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Decides what a `POST` to `path` with `headers` (names in lower case) and `body` comes to.
    public func receive(path: String, headers: [String: String], body: [UInt8]) -> Decision {
        guard let hook = hooks[path] else {
            return .refuse(Refusal(status: 404, code: .notFound, message: "no webhook at \(path)"))
        }
        guard body.count <= configuration.maxBodyBytes else {
            return .refuse(Refusal(status: 413, code: .tooLarge, message: "the body is over \(configuration.maxBodyBytes) bytes"))
        }
        if case .rejected(let reason) = hook.authentication.verify(headers: headers, body: body) {
            return .refuse(Refusal(status: 401, code: .unauthorized, message: "the request's signature or secret is not valid", logReason: reason))
        }
        let text: String
        if let template = hook.template {
            guard let payload = try? Wire.decode(JSONValue.self, from: body) else {
                return .refuse(Refusal(status: 400, code: .invalid, message: "the body is not JSON, and the hook \(path) fills a template from JSON"))
            }
            text = template.render(payload)
        } else {
            guard let decoded = String(validating: body, as: UTF8.self) else {
                return .refuse(Refusal(status: 400, code: .invalid, message: "the body is not UTF-8 text"))
            }
            text = decoded
        }
        let content = Self.postable(text, limit: limits.maxContentLength)
        guard !content.isEmpty else {
            return .refuse(Refusal(status: 400, code: .invalid, message: "nothing to post: the text is empty"))
        }
        return .post(hook, text: content)
    }

    /// `text` as the server accepts it: without the control characters the protocol refuses (so
    /// `\r\n` becomes `\n`), trimmed, and cut to `limit` characters with an ellipsis.
    static func postable(_ text: String, limit: Int) -> String {
        let kept = text.unicodeScalars.filter { scalar in
            let value = scalar.value
            return !((value < 0x20 && value != 0x09 && value != 0x0A) || (0x7F...0x9F).contains(value))
        }
        guard let first = kept.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = kept.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        let trimmed = kept[first...last]
        guard trimmed.count > limit else { return String(String.UnicodeScalarView(trimmed)) }
        return String(String.UnicodeScalarView(trimmed.prefix(limit - 1))) + "…"
    }
}

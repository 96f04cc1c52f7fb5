import Foundation
import SwitchboardProtocol

/// The configuration of the webhooks plugin: where it listens and what each hook posts where.
///
/// ```yaml
/// plugins:
///   - plugin: webhooks
///     config:
///       port: 8090                    # host defaults to 127.0.0.1
///       hooks:
///         - path: /github
///           room: deployments         # a room id, or the name of one of the bot's rooms
///           auth: hmac                # GitHub's X-Hub-Signature-256
///           secretEnv: GITHUB_WEBHOOK_SECRET
///           template: "{{ pusher.name }} pushed to {{ repository.full_name }}: {{ head_commit.message }}"
///         - path: /alerts
///           room: ops
///           auth: bearer              # Authorization: Bearer <secret>
///           secretFile: /run/secrets/alerts
///                                     # no template: the body is posted as text
/// ```
public struct WebhookConfiguration: Sendable, Hashable, Decodable {
    /// The address to listen on; loopback by default, so that only a proxy in front reaches it.
    public var host: String = "127.0.0.1"
    /// The port; 0 picks a free one (tests).
    public var port: Int = 8090
    /// The largest body accepted, in bytes; a larger one gets 413.
    public var maxBodyBytes: Int = 1 << 20
    /// The hooks, each at its own path.
    public var hooks: [Hook]

    /// A configuration with `hooks` and the defaults for the rest.
    public init(hooks: [Hook]) {
        self.hooks = hooks
    }

    /// One hook: a path, a room, a secret, and what to post.
    public struct Hook: Sendable, Hashable {
        /// The path it answers, from `/` (a `POST` there).
        public var path: String
        /// The room to post into: an id, or the name of one of the bot's rooms.
        public var room: String
        /// How a request proves it holds the secret.
        public var authentication: WebhookAuthentication
        /// The text to post, filled from a JSON body; `nil` posts the body itself as text.
        public var template: MessageTemplate?

        /// A hook.
        public init(path: String, room: String, authentication: WebhookAuthentication, template: MessageTemplate? = nil) {
            self.path = path.hasPrefix("/") ? path : "/" + path
            self.room = room
            self.authentication = authentication
            self.template = template
        }
    }

    private enum CodingKeys: String, CodingKey { case host, port, maxBodyBytes, hooks }

    /// Reads a configuration; a missing field keeps its default.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        host = try container.decodeIfPresent(String.self, forKey: .host) ?? host
        port = try container.decodeIfPresent(Int.self, forKey: .port) ?? port
        guard (0...65535).contains(port) else {
            throw DecodingError.dataCorruptedError(forKey: .port, in: container, debugDescription: "`port` must be 0 to 65535, not \(port)")
        }
        maxBodyBytes = try container.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? maxBodyBytes
        hooks = try container.decode([Hook].self, forKey: .hooks)
        var seen: Set<String> = []
        for hook in hooks where !seen.insert(hook.path).inserted {
            throw DecodingError.dataCorruptedError(forKey: .hooks, in: container, debugDescription: "two hooks have the path \(hook.path); give each its own")
        }
    }
}

extension WebhookConfiguration.Hook: Decodable {
    private enum CodingKeys: String, CodingKey { case path, room, auth, secret, secretEnv, secretFile, template }

    /// Reads a hook. The secret comes from `secret` (inline), `secretEnv` (an environment variable)
    /// or `secretFile` (a file, without its final new line): exactly one of them.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = try container.decode(String.self, forKey: .path)
        let room = try container.decode(String.self, forKey: .room)
        let sources = [CodingKeys.secret, .secretEnv, .secretFile].filter { container.contains($0) }
        guard sources.count == 1, let source = sources.first else {
            throw DecodingError.dataCorruptedError(
                forKey: .secret, in: container,
                debugDescription: "hook \(path) needs exactly one of `secret`, `secretEnv` or `secretFile` (it has \(sources.count)); a webhook without a secret would post anyone's text"
            )
        }
        let given = try container.decode(String.self, forKey: source)
        let secret: String
        switch source {
        case .secretEnv:
            guard let value = ProcessInfo.processInfo.environment[given], !value.isEmpty else {
                throw DecodingError.dataCorruptedError(forKey: .secretEnv, in: container, debugDescription: "hook \(path): the environment variable \(given) is not set")
            }
            secret = value
        case .secretFile:
            guard let contents = try? String(contentsOfFile: given, encoding: .utf8) else {
                throw DecodingError.dataCorruptedError(forKey: .secretFile, in: container, debugDescription: "hook \(path): cannot read the secret file \(given)")
            }
            secret = contents.hasSuffix("\n") ? String(contents.dropLast()) : contents
        default:
            secret = given
        }
        guard !secret.isEmpty else {
            throw DecodingError.dataCorruptedError(forKey: source, in: container, debugDescription: "hook \(path): the secret is empty")
        }
        let authentication: WebhookAuthentication
        switch try container.decodeIfPresent(String.self, forKey: .auth) ?? "hmac" {
        case "hmac": authentication = .hmac(secret: secret)
        case "bearer": authentication = .bearer(secret: secret)
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .auth, in: container, debugDescription: "hook \(path): `auth` must be hmac or bearer, not \(other)")
        }
        var template: MessageTemplate?
        if let text = try container.decodeIfPresent(String.self, forKey: .template) {
            do {
                template = try MessageTemplate(text)
            } catch {
                throw DecodingError.dataCorruptedError(forKey: .template, in: container, debugDescription: "hook \(path): \(error.message)")
            }
        }
        self.init(path: path, room: room, authentication: authentication, template: template)
    }
}

import Foundation
import SwitchboardProtocol
import Testing

@testable import SwitchboardAgent

@Suite("Webhooks: signatures, templates, decisions", .timeLimit(.minutes(1)))
struct WebhookUnitTests {
    @Test("GitHub's own example signature is accepted, and any change to body, secret or signature is not")
    func githubExample() {
        // The example of GitHub's documentation, "Validating webhook deliveries".
        let body = Array("Hello, World!".utf8)
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        #expect(WebhookAuthentication.signature(of: body, secret: "It's a Secret to Everybody") == signature)
        let check = WebhookAuthentication.hmac(secret: "It's a Secret to Everybody")
        #expect(check.verify(headers: ["x-hub-signature-256": signature], body: body) == .accepted)
        #expect(check.verify(headers: ["x-hub-signature-256": signature.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256=")], body: body) == .accepted)
        #expect(check.verify(headers: ["x-hub-signature-256": signature], body: Array("Hello, World?".utf8)) != .accepted)
        #expect(WebhookAuthentication.hmac(secret: "another").verify(headers: ["x-hub-signature-256": signature], body: body) != .accepted)
        #expect(check.verify(headers: [:], body: body) == .rejected("no x-hub-signature-256 header"))
        #expect(check.verify(headers: ["x-hub-signature-256": "sha1=abc"], body: body) != .accepted)
        #expect(check.verify(headers: ["x-hub-signature-256": String(signature.dropLast(2))], body: body) != .accepted)
        #expect(check.verify(headers: ["x-hub-signature-256": String(signature.dropLast()) + "g"], body: body) != .accepted)
    }

    @Test("a bearer secret is compared whole")
    func bearer() {
        let check = WebhookAuthentication.bearer(secret: "tok-123")
        #expect(check.verify(headers: ["authorization": "Bearer tok-123"], body: []) == .accepted)
        #expect(check.verify(headers: ["authorization": "bearer tok-123"], body: []) == .accepted)
        #expect(check.verify(headers: ["authorization": "Bearer tok-12"], body: []) != .accepted)
        #expect(check.verify(headers: ["authorization": "Bearer tok-1234"], body: []) != .accepted)
        #expect(check.verify(headers: ["authorization": "Basic tok-123"], body: []) != .accepted)
        #expect(check.verify(headers: [:], body: []) == .rejected("no Authorization header"))
    }

    @Test("templates fill members, array items and non-strings; missing places are empty")
    func templates() throws {
        let payload: JSONValue = [
            "repository": ["full_name": "acme/site", "private": false],
            "commits": [["message": "Fix the build"], ["message": "Add tests"]],
            "size": 2, "ratio": 0.5, "nothing": nil,
        ]
        let template = try MessageTemplate("{{ repository.full_name }}: {{commits.1.message}} ({{ size }}, {{ ratio }}, {{ repository.private }})")
        #expect(template.render(payload) == "acme/site: Add tests (2, 0.5, false)")
        #expect(try MessageTemplate("[{{ missing.field }}][{{ commits.9.message }}][{{ nothing }}][{{ size.x }}]").render(payload) == "[][][][]")
        #expect(try MessageTemplate("{{ commits.0 }}").render(payload) == #"{"message":"Fix the build"}"#)
        #expect(try MessageTemplate("no places").render(payload) == "no places")
        #expect(throws: MessageTemplateError.self) { try MessageTemplate("{{ open") }
        #expect(throws: MessageTemplateError.self) { try MessageTemplate("a {{ }} b") }
    }

    static let configuration: WebhookConfiguration = {
        var configuration = WebhookConfiguration(hooks: [
            .init(path: "github", room: "r1", authentication: .hmac(secret: "s3cret"), template: try! MessageTemplate("{{ pusher.name }} pushed")),
            .init(path: "/text", room: "r2", authentication: .bearer(secret: "b34rer")),
        ])
        configuration.maxBodyBytes = 100
        return configuration
    }()

    @Test("the receiver routes, checks, renders, and refuses with the right status")
    func decisions() {
        let receiver = WebhookReceiver(configuration: Self.configuration)
        let json = Array(#"{"pusher":{"name":"ana"}}"#.utf8)
        let signed = ["x-hub-signature-256": WebhookAuthentication.signature(of: json, secret: "s3cret")]
        #expect(receiver.receive(path: "/github", headers: signed, body: json) == .post(Self.configuration.hooks[0], text: "ana pushed"))
        guard case .refuse(let unsigned) = receiver.receive(path: "/github", headers: [:], body: json) else {
            Issue.record("an unsigned request was accepted")
            return
        }
        #expect(unsigned.status == 401)
        #expect(unsigned.code == .unauthorized)
        #expect(unsigned.logReason == "no x-hub-signature-256 header")
        let notJSON = Array("hello".utf8)
        let signedText = ["x-hub-signature-256": WebhookAuthentication.signature(of: notJSON, secret: "s3cret")]
        #expect(status(receiver.receive(path: "/github", headers: signedText, body: notJSON)) == 400)
        #expect(status(receiver.receive(path: "/elsewhere", headers: signed, body: json)) == 404)
        let bearer = ["authorization": "Bearer b34rer"]
        #expect(receiver.receive(path: "/text", headers: bearer, body: Array(" disk full\r\non db1 ".utf8)) == .post(Self.configuration.hooks[1], text: "disk full\non db1"))
        #expect(status(receiver.receive(path: "/text", headers: bearer, body: Array(repeating: UInt8(ascii: "a"), count: 101))) == 413)
        #expect(status(receiver.receive(path: "/text", headers: bearer, body: Array("  \u{1}  ".utf8))) == 400)
    }

    @Test("long text is cut to the server's limit with an ellipsis")
    func cutting() {
        let text = WebhookReceiver.postable(String(repeating: "é", count: 5000), limit: 4000)
        #expect(text.unicodeScalars.count == 4000)
        #expect(text.hasSuffix("é…"))
    }

    @Test("hooks read from configuration need exactly one secret, and name what is wrong")
    func configurationDecoding() throws {
        setenv("WEBHOOK_TEST_SECRET", "from-env", 1)
        let text = #"{"port":0,"hooks":[{"path":"gh","room":"general","secretEnv":"WEBHOOK_TEST_SECRET"},{"path":"/b","room":"r","auth":"bearer","secret":"x"}]}"#
        let configuration = try JSONDecoder().decode(WebhookConfiguration.self, from: Data(text.utf8))
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.hooks.map(\.path) == ["/gh", "/b"])
        #expect(configuration.hooks[0].authentication == .hmac(secret: "from-env"))
        #expect(configuration.hooks[1].authentication == .bearer(secret: "x"))
        for (bad, expected) in [
            (#"{"hooks":[{"path":"a","room":"r"}]}"#, "exactly one of"),
            (#"{"hooks":[{"path":"a","room":"r","secret":"x","secretEnv":"Y"}]}"#, "exactly one of"),
            (#"{"hooks":[{"path":"a","room":"r","secretEnv":"NO_SUCH_VARIABLE_HERE"}]}"#, "NO_SUCH_VARIABLE_HERE is not set"),
            (#"{"hooks":[{"path":"a","room":"r","secret":"x","auth":"basic"}]}"#, "hmac or bearer"),
            (#"{"hooks":[{"path":"a","room":"r","secret":"x","template":"{{ a"}]}"#, "without `}}`"),
            (#"{"hooks":[{"path":"a","room":"r","secret":"x"},{"path":"/a","room":"s","secret":"y"}]}"#, "two hooks have the path /a"),
        ] {
            do {
                _ = try JSONDecoder().decode(WebhookConfiguration.self, from: Data(bad.utf8))
                Issue.record("accepted: \(bad)")
            } catch DecodingError.dataCorrupted(let context) {
                #expect(context.debugDescription.contains(expected), "\(context.debugDescription)")
            }
        }
    }

    private func status(_ decision: WebhookReceiver.Decision) -> Int? {
        if case .refuse(let refusal) = decision { return refusal.status }
        return nil
    }
}

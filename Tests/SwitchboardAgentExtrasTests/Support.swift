import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting

/// A client configuration for tests: quick reconnection and short timeouts.
func clientConfiguration(_ server: TestServer, token: String) -> ClientConfiguration {
    var configuration = ClientConfiguration(server: server.baseURL, credentials: .token(token))
    configuration.backoff.initialDelay = .milliseconds(50)
    configuration.backoff.maxDelay = .milliseconds(400)
    configuration.connectTimeout = .seconds(3)
    configuration.requestTimeout = .seconds(10)
    return configuration
}

/// A quiet logger for clients.
func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return logger
}

/// Waits until `condition` holds, looking every 20 ms.
func eventually(timeout: Duration = .seconds(20), _ what: String, _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// An HTTP answer from a listener of the agent.
struct Answer: Sendable {
    var status: Int
    var contentType: String?
    var text: String
    var json: JSONValue? { try? Wire.decode(JSONValue.self, from: text) }
}

/// Sends a request to `http://127.0.0.1:port/path`.
func http(
    _ method: HTTPMethod, port: Int, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil
) async throws -> Answer {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = method
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let bytes = try await response.body.collect(upTo: 1 << 20)
    return Answer(status: Int(response.status.code), contentType: response.headers.first(name: "content-type"), text: String(buffer: bytes))
}

/// The path of the repository's Python example bot.
let pythonExampleBot: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Bots/python-example/bot.py").path

/// The value of one series (`name{labels}`, exactly as printed) in Prometheus' text format, or nil.
func sample(_ text: String, _ series: String) -> Double? {
    text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
}

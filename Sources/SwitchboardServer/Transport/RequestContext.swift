import Hummingbird
import NIOCore
import SwitchboardProtocol

/// The request context of every route: Hummingbird's, and the caller.
public struct ChatRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection the request came on.
    public let channel: any Channel
    /// Who made the request, once `AuthMiddleware` checked the token.
    public var identity: Identity?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
        self.identity = nil
    }

    /// Request bodies are small JSON objects; 1 MiB leaves room and stops abuse.
    public var maxUploadSize: Int { 1 << 20 }

    /// The caller, or `unauthorized`.
    func requireIdentity() throws -> Identity {
        guard let identity else { throw ProtocolError(.unauthorized, "missing bearer token") }
        return identity
    }
}

/// Checks the bearer token (`Authorization: Bearer …`, or `?token=` where browsers need it) and
/// puts the caller in the context.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ChatRequestContext
    let accounts: Accounts
    let allowsQueryToken: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var token: String?
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { token = String(parts[1]).trimmingSpaces() }
        }
        if token == nil, allowsQueryToken { token = request.uri.queryParameters.get("token") }
        guard let token, !token.isEmpty else {
            throw ProtocolError(.unauthorized, "missing bearer token: send 'Authorization: Bearer <token>'")
        }
        var context = context
        context.identity = try await accounts.authenticate(token: token)
        return try await next(request, context)
    }
}

/// Turns every failure into the contract's error body: `{"error": {"code", "message"}}`.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ChatRequestContext
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ProtocolError {
            return response(for: error)
        } catch let error as HTTPResponseError {
            let code: ErrorCode
            let message: String
            switch error.status {
            case .notFound:
                (code, message) = (.notFound, "no route \(request.method) \(request.uri.path)")
            case .contentTooLarge:
                (code, message) = (.tooLarge, "the body is larger than \(context.maxUploadSize) bytes")
            case .unauthorized:
                (code, message) = (.unauthorized, "unauthorized")
            case .methodNotAllowed:
                (code, message) = (.notFound, "no route \(request.method) \(request.uri.path)")
            case let status where status.code < 500:
                (code, message) = (.invalid, status.reasonPhrase)
            default:
                (code, message) = (.internal, "internal error")
            }
            return response(for: ProtocolError(code, message))
        } catch {
            context.logger.error("request failed", metadata: ["switchboard.error": "\(error)"])
            return response(for: ProtocolError(.internal, "internal error"))
        }
    }

    private func response(for error: ProtocolError) -> Response {
        metrics.error(error.code)
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if let retryAfterMs = error.retryAfterMs {
            headers[.retryAfter] = String(max(1, (retryAfterMs + 999) / 1000))
        }
        let body = (try? Wire.encode(ErrorResponse(error: error))) ?? []
        return Response(
            status: HTTPResponse.Status(code: error.code.httpStatus),
            headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body))
        )
    }
}

extension String {
    func trimmingSpaces() -> String {
        var text = Substring(self)
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        return String(text)
    }
}

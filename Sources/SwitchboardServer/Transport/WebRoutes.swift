import Crypto
import Hummingbird
import Logging
import NIOCore
import SwitchboardWeb

/// The web page at `/` and its assets at `/assets/<version>/<file>` (`--web on`, the default).
///
/// `<version>` is a hash of every file of the page, so assets are cached for a year and the page
/// itself is revalidated on each load. Every answer carries a strict Content-Security-Policy:
/// scripts, styles and connections only from the page's own origin, nothing inline, no framing.
struct WebRoutes {
    let page: WebPage
    let version: String
    let index: [UInt8]

    init(page: WebPage) {
        self.page = page
        var hash = SHA256()
        for name in page.files.keys.sorted() {
            hash.update(data: Array(name.utf8) + [0])
            hash.update(data: page.files[name]!)
        }
        version = hash.finalize().prefix(6).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        index = page.index(assets: "/assets/\(version)/")
    }

    /// Mounts the page, or logs why it cannot (the API keeps working without it).
    static func mount(on router: Router<ChatRequestContext>, logger: Logger) {
        do {
            WebRoutes(page: try WebPage.load()).add(to: router)
        } catch {
            logger.error("the web page is not served", metadata: ["switchboard.error": "\(error)"])
        }
    }

    func add(to router: Router<ChatRequestContext>) {
        let etag = "\"\(version)\""
        router.get("/") { request, _ in
            if request.headers[.ifNoneMatch] == etag {
                return Response(status: .notModified, headers: headers(request, cache: "no-cache", etag: etag))
            }
            var fields = headers(request, cache: "no-cache", etag: etag)
            fields[.contentType] = WebPage.contentType(of: "index.html")
            return Response(status: .ok, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: index)))
        }
        router.get("assets/:version/:file") { request, context in
            let name = try context.parameters.require("file")
            guard try context.parameters.require("version") == version, name != "index.html", let bytes = page.files[name] else {
                throw HTTPError(.notFound)
            }
            var fields = headers(request, cache: "public, max-age=31536000, immutable", etag: nil)
            fields[.contentType] = WebPage.contentType(of: name)
            return Response(status: .ok, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }

    private func headers(_ request: Request, cache: String, etag: String?) -> HTTPFields {
        var fields = HTTPFields()
        fields[.cacheControl] = cache
        if let etag { fields[.eTag] = etag }
        fields[.contentSecurityPolicy] = Self.contentSecurityPolicy(host: request.head.authority)
        fields[.xContentTypeOptions] = "nosniff"
        fields[HTTPFields.Element.Name("Referrer-Policy")!] = "no-referrer"
        fields[HTTPFields.Element.Name("X-Frame-Options")!] = "DENY"
        return fields
    }

    /// `connect-src 'self'` covers a same-origin `ws://` in Chromium and Firefox; the WebSocket
    /// origins are named too for browsers that have not always counted them as `'self'`.
    static func contentSecurityPolicy(host: String?) -> String {
        var connect = "'self'"
        // Only a plain host[:port] goes into the header; anything else keeps the policy at 'self'.
        let plain = host?.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || Array(".-:[]".utf8).contains(byte)
        }
        if let host, !host.isEmpty, plain == true {
            connect += " ws://\(host) wss://\(host)"
        }
        return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src \(connect); "
            + "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}

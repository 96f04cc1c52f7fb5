import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Web page: served at / with strict headers, assets cached by hash", .timeLimit(.minutes(1)))
struct WebPageTests {
    @Test("/ serves the page with a strict Content-Security-Policy and the usual headers, revalidated on each load")
    func index() async throws {
        try await withServer { server in
            let page = try await server.request(.GET, "/")
            #expect(page.status == 200)
            #expect(page.headers["Content-Type"].first == "text/html; charset=utf-8")
            let policy = try #require(page.headers["Content-Security-Policy"].first)
            #expect(policy.contains("default-src 'self'"))
            #expect(policy.contains("script-src 'self';"))
            #expect(policy.contains("style-src 'self';"))
            #expect(policy.contains("connect-src 'self' ws://127.0.0.1:\(server.port) wss://127.0.0.1:\(server.port);"))
            #expect(policy.contains("frame-ancestors 'none'"))
            #expect(!policy.contains("unsafe-inline"))
            #expect(page.headers["X-Content-Type-Options"].first == "nosniff")
            #expect(page.headers["Referrer-Policy"].first == "no-referrer")
            #expect(page.headers["Cache-Control"].first == "no-cache")
            // No inline script or style: every script and stylesheet is a file under the versioned prefix.
            #expect(!page.text.contains("<style"))
            #expect(!page.text.contains("<script>"))
            #expect(!page.text.contains(" style="))
            #expect(page.text.contains("<script type=\"module\" src=\"/assets/"))

            let etag = try #require(page.headers["ETag"].first)
            let again = try await server.request(.GET, "/", headers: [("If-None-Match", etag)])
            #expect(again.status == 304)
            #expect(again.body.isEmpty)
        }
    }

    @Test("assets live under a version made of their hash, cached for a year; another version or file is 404")
    func assets() async throws {
        try await withServer { server in
            let page = try await server.request(.GET, "/")
            let script = try #require(page.text.firstMatch(of: #/src="(/assets/([0-9a-f]{12})/app\.js)"/#))
            let (path, version) = (String(script.output.1), String(script.output.2))

            let asset = try await server.request(.GET, path)
            #expect(asset.status == 200)
            #expect(asset.headers["Content-Type"].first == "text/javascript; charset=utf-8")
            #expect(asset.headers["Cache-Control"].first == "public, max-age=31536000, immutable")
            #expect(asset.headers["Content-Security-Policy"].first?.contains("default-src 'self'") == true)
            #expect(asset.headers["X-Content-Type-Options"].first == "nosniff")
            #expect(asset.text.contains("import "))
            // Modules import each other relatively, so they stay under the same version.
            let client = try await server.request(.GET, "/assets/\(version)/connection.js")
            #expect(client.status == 200)
            let css = try await server.request(.GET, "/assets/\(version)/app.css")
            #expect(css.headers["Content-Type"].first == "text/css; charset=utf-8")

            for missing in ["/assets/000000000000/app.js", "/assets/\(version)/nothing.js", "/assets/\(version)/index.html"] {
                let answer = try await server.request(.GET, missing)
                #expect(answer.status == 404, "\(missing)")
                #expect(answer.text.contains("not_found"))
            }
            // The API is untouched by the page.
            #expect(try await server.request(.GET, "/healthz").status == 200)
        }
    }

    @Test("web off: / is the API's 404 and no asset is served")
    func off() async throws {
        try await withServer({ $0.web = false }) { server in
            let page = try await server.request(.GET, "/")
            #expect(page.status == 404)
            #expect(page.text.contains("not_found"))
            #expect(try await server.request(.GET, "/healthz").status == 200)
        }
    }
}

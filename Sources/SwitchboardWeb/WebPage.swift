import Foundation

/// The web page that `switchboard serve` serves at `/`: its files, read from this module's resources.
///
/// The page is plain HTML, CSS and JavaScript modules in `Page/`, served as they are (no build
/// step). `index.html` names its assets as `/assets/<file>`; the server rewrites that prefix to a
/// versioned one, so the assets can be cached for good and change name when any file changes.
///
/// ```swift
/// let page = try WebPage.load()
/// let html = page.files["index.html"]
/// ```
public struct WebPage: Sendable {
    /// Every file of the page by name (`index.html`, `app.js`, …), as bytes.
    public let files: [String: [UInt8]]

    /// Reads the page from the module's resource bundle.
    ///
    /// - Throws: ``WebPageError`` when the bundle is missing (a binary copied without the
    ///   `switchboard_SwitchboardWeb.resources` folder that SwiftPM puts next to it).
    public static func load() throws -> WebPage {
        guard let folder = Bundle.module.url(forResource: "Page", withExtension: nil) else {
            throw WebPageError(message: "the web page's files are missing: keep the folder switchboard_SwitchboardWeb.resources next to the binary, or serve with --web off")
        }
        var files: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where !name.hasPrefix(".") {
            files[name] = Array(try Data(contentsOf: folder.appendingPathComponent(name)))
        }
        guard files["index.html"] != nil else {
            throw WebPageError(message: "the web page has no index.html in \(folder.path)")
        }
        return WebPage(files: files)
    }

    /// `index.html` with its `"/assets/` references pointed at `assets` (e.g. `/assets/3f2a9c/`).
    public func index(assets: String) -> [UInt8] {
        let html = String(decoding: files["index.html"] ?? [], as: UTF8.self)
        return Array(html.replacingOccurrences(of: "\"/assets/", with: "\"" + assets).utf8)
    }

    /// The media type of a file of the page, from its extension.
    public static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "json": "application/json"
        default: "application/octet-stream"
        }
    }
}

/// The web page could not be loaded.
public struct WebPageError: Error, CustomStringConvertible {
    /// What is wrong, and how to fix it.
    public let message: String
    public var description: String { message }
}

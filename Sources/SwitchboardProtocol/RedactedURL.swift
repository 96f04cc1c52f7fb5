import Foundation

/// A database or server URL fit for messages and logs: its password replaced by `***`.
///
/// ```swift
/// RedactedURL.string("postgres://ana:secret@db/chat")   // "postgres://ana:***@db/chat"
/// ```
public enum RedactedURL {
    /// `url` without its password. A URL that does not parse (a `#`, `/` or `?` left unescaped in
    /// the password does that) loses everything between `://` and its last `@`, so that no part
    /// of a password shows either way.
    public static func string(_ url: String) -> String {
        if let parsed = URLComponents(string: url) {
            guard parsed.password != nil else { return url }
            var components = parsed
            components.password = "***"
            if let redacted = components.string { return redacted }
        }
        guard let scheme = url.range(of: "://"), let at = url.range(of: "@", options: .backwards), at.lowerBound > scheme.upperBound else {
            return url
        }
        return url[..<scheme.upperBound] + "***" + url[at.lowerBound...]
    }
}

/// A database or server URL fit for messages and logs: its password replaced by `***`.
///
/// ```swift
/// RedactedURL.string("postgres://ana:secret@db/chat")   // "postgres://ana:***@db/chat"
/// ```
public enum RedactedURL {
    /// `url` without its password: whatever lies between the first `:` after `://` and the last
    /// `@`. Read from the text rather than parsed, so that no password shows whatever it holds
    /// (an unescaped `#`, `/` or `?` makes a URL parser fail, and digits alone make it read the
    /// user as a host and the password as a port).
    public static func string(_ url: String) -> String {
        guard let scheme = url.firstRange(of: "://"), let at = url.lastIndex(of: "@"), at > scheme.upperBound,
            let colon = url[scheme.upperBound..<at].firstIndex(of: ":")
        else { return url }
        return url[..<url.index(after: colon)] + "***" + url[at...]
    }
}

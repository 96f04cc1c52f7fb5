import SwitchboardProtocol

/// Text with `{{ field.path }}` places, filled from a JSON value.
///
/// A path names members of objects and indices of arrays, separated by dots. A place whose path
/// leads nowhere, or to `null`, becomes empty; a string is put in as it is, a number or a boolean
/// as JSON writes it, an array or object as compact JSON. Nothing else in the text is special.
///
/// ```swift
/// let template = try MessageTemplate("{{ pusher.name }} pushed {{ commits.0.message }} to {{ repository.full_name }}")
/// template.render(payload)   // "ana pushed Fix the build to acme/site"
/// ```
public struct MessageTemplate: Sendable, Hashable {
    private enum Part: Sendable, Hashable {
        case text(String)
        case field([String])
    }

    /// The template as written.
    public let source: String
    private let parts: [Part]

    /// Reads a template.
    ///
    /// - Throws: ``MessageTemplateError`` for a `{{` without its `}}`, or an empty place `{{ }}`.
    public init(_ source: String) throws(MessageTemplateError) {
        self.source = source
        var parts: [Part] = []
        var rest = Substring(source)
        while let open = rest.firstRange(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].firstRange(of: "}}") else {
                throw MessageTemplateError(message: "`{{` without `}}` in the template \"\(source)\"")
            }
            let path = rest[open.upperBound..<close.lowerBound].trimmingWhitespace()
            guard !path.isEmpty else {
                throw MessageTemplateError(message: "an empty place `{{ }}` in the template \"\(source)\"; name a field, e.g. {{ repository.name }}")
            }
            parts.append(.field(path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    /// The text with every place filled from `value`.
    public func render(_ value: JSONValue) -> String {
        var text = ""
        for part in parts {
            switch part {
            case .text(let literal): text += literal
            case .field(let path): text += Self.text(of: Self.lookUp(path, in: value))
            }
        }
        return text
    }

    private static func lookUp(_ path: [String], in value: JSONValue) -> JSONValue? {
        var current = value
        for key in path {
            switch current {
            case .object(let members):
                guard let next = members[key] else { return nil }
                current = next
            case .array(let items):
                guard let index = Int(key), items.indices.contains(index) else { return nil }
                current = items[index]
            default:
                return nil
            }
        }
        return current
    }

    private static func text(of value: JSONValue?) -> String {
        switch value {
        case nil, .null?: ""
        case .string(let string)?: string
        case let other?: (try? Wire.encodeString(other)) ?? ""
        }
    }
}

/// A template that cannot be read.
public struct MessageTemplateError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, and where.
    public var message: String

    public var description: String { message }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return self[first...last]
    }
}

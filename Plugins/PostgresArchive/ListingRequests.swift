/// Whether the bot's rooms must be listed again: requests counted, so that one made while a
/// listing is under way is not taken as answered by it (that listing may have been read before).
struct ListingRequests: Sendable {
    private var requested = 1
    private var answered = 0

    /// Whether a request is not yet answered by a listing that started after it.
    var isPending: Bool { answered < requested }

    /// Something the last listing may not know of happened.
    mutating func request() { requested += 1 }

    /// A listing starts: what it will answer once it has succeeded.
    func begin() -> Int { requested }

    /// The listing that began with `ticket` succeeded.
    mutating func finish(_ ticket: Int) { answered = max(answered, ticket) }
}

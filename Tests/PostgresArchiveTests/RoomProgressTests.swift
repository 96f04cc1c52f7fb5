import SwitchboardProtocol
import Testing

@testable import PostgresArchive

@Suite struct RoomProgressTests {
    @Test func nothingHappensBeforeThePositionIsKnown() {
        var progress = RoomProgress(capacity: 10)
        progress.received(message(1, "a"))
        #expect(progress.nextStep(batchSize: 5) == .idle)
        progress.loaded(position: 0)
        #expect(progress.nextStep(batchSize: 5) == .write([message(1, "a")]))
    }

    @Test func liveMessagesThatContinueThePositionAreWrittenInBatches() {
        var progress = RoomProgress(capacity: 10)
        progress.loaded(position: 2)
        for seq in 3...9 { progress.received(message(seq, "m\(seq)")) }
        guard case .write(let batch) = progress.nextStep(batchSize: 5) else { Issue.record("expected a write"); return }
        #expect(batch.map(\.seq) == [3, 4, 5, 6, 7])
        progress.archived(upTo: 7)
        guard case .write(let rest) = progress.nextStep(batchSize: 5) else { Issue.record("expected a write"); return }
        #expect(rest.map(\.seq) == [8, 9])
        progress.archived(upTo: 9)
        #expect(progress.nextStep(batchSize: 5) == .idle)
    }

    @Test func aHoleIsReadFromHistoryFirst() {
        var progress = RoomProgress(capacity: 10)
        progress.loaded(position: 4)
        progress.received(message(8, "later"))
        #expect(progress.nextStep(batchSize: 50) == .fetch(after: 4, limit: 50))
        #expect(progress.nextStep(batchSize: 500) == .fetch(after: 4, limit: 200), "the server answers at most 200")
    }

    @Test func whatTheServerHasIsFetchedEvenWithoutLiveMessages() {
        var progress = RoomProgress(capacity: 10)
        progress.loaded(position: 0)
        #expect(progress.nextStep(batchSize: 5) == .idle)
        progress.serverHas(upTo: 500)
        #expect(progress.nextStep(batchSize: 5) == .fetch(after: 0, limit: 5))
    }

    @Test func aFullBufferForgetsMessagesButNotThatTheyExist() {
        var progress = RoomProgress(capacity: 3)
        progress.loaded(position: 0)
        for seq in 2...10 { progress.received(message(seq, "m")) }
        #expect(progress.buffer.count == 3)
        #expect(progress.known == 10)
        #expect(progress.nextStep(batchSize: 5) == .fetch(after: 0, limit: 5))
    }

    @Test func messagesAlreadyArchivedAreIgnored() {
        var progress = RoomProgress(capacity: 10)
        progress.loaded(position: 5)
        progress.received(message(5, "again"))
        progress.received(message(3, "older"))
        #expect(progress.buffer.isEmpty)
        #expect(progress.nextStep(batchSize: 5) == .idle)
    }

    @Test func anEmptyHistoryEndsTheFetching() {
        var progress = RoomProgress(capacity: 10)
        progress.loaded(position: 3)
        progress.serverHas(upTo: 9)
        progress.foundNothing(after: 3)
        #expect(progress.nextStep(batchSize: 5) == .idle)
    }

    @Test func aLoadedPositionNeverMovesBack() {
        var progress = RoomProgress(capacity: 10)
        progress.loaded(position: 7)
        progress.loaded(position: 2)
        #expect(progress.position == 7)
    }
}

@Suite("Export formats: what a member put in meta cannot act on a terminal", .timeLimit(.minutes(1)))
struct ExportFormatTests {
    static let message = ArchivedMessage(
        roomId: "r_1", seq: 1, id: "m_1", userId: "u_1", username: "bob", displayName: "Bob", content: "hi\nthere",
        createdAt: 0, replyTo: nil, meta: #"{"bridge":{"nick":"\u001b]0;pwned\u0007\u001b[2J\u009b","network":"irc\u202e"}}"#,
        editedAt: nil, deleted: false, reactions: [:])

    @Test(arguments: [ExportFormat.txt, .jsonl, .html])
    func noControlCharacterIsWrittenRaw(_ format: ExportFormat) {
        let entry = format.entry(Self.message)
        #expect(!entry.unicodeScalars.contains { $0 != "\n" && TerminalText.isControl($0) }, "\(format): \(entry.debugDescription)")
    }

    @Test func txtIndentsTheLinesOfAMessageAndShowsItsBidirectionalControls() {
        var message = Self.message
        message.content = "hi\nthere \u{202E}txt"
        let entry = ExportFormat.txt.entry(message)
        #expect(entry.contains("hi\n    there \\u{202E}txt"), "\(entry.debugDescription)")
    }
}

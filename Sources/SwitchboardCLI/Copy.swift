import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SwitchboardStore

/// `switchboard export`: the whole database as JSON lines, to move it to another backend.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the whole database (users, tokens, rooms, members, messages, reactions) as JSON lines.",
        discussion: """
            Stop the server first: a copy of a database in use may miss what is written meanwhile.
            switchboard export --database ./switchboard.db --output switchboard.jsonl
            """
    )

    @OptionGroup var database: DatabaseOptions
    @Option(help: "File to write (default: standard output).") var output: String?

    func run() async throws {
        let handle: FileHandle
        // Written beside the output and renamed once complete: a failed export leaves no file
        // that could be taken for a whole copy (nor replaces an earlier one).
        let partial = output.map { $0 + ".partial" }
        if let partial {
            guard FileManager.default.createFile(atPath: partial, contents: nil) else {
                throw Failure(description: "cannot create \(partial); check the folder exists and is writable")
            }
            handle = try FileHandle(forWritingTo: URL(fileURLWithPath: partial))
        } else {
            handle = FileHandle.standardOutput
        }
        do {
            try await export(to: handle)
        } catch {
            if let partial { try? FileManager.default.removeItem(atPath: partial) }
            throw error
        }
        if let output, let partial {
            try handle.close()
            guard rename(partial, output) == 0 else {
                throw Failure(description: "cannot rename \(partial) to \(output): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func export(to handle: FileHandle) async throws {
        let progress = ProgressLine(verb: "exported")
        try await database.withStore(logger: makeLogger()) { store in
            guard let store = store as? any TransferableStore else { throw Failure(description: "this backend cannot be exported") }
            var buffer = Data()
            let counts = try await StoreCopy.export(from: store, progress: progress.show) { line in
                buffer.append(contentsOf: line.utf8)
                buffer.append(0x0A)
                if buffer.count >= 1 << 20 {
                    try handle.write(contentsOf: buffer)
                    buffer.removeAll(keepingCapacity: true)
                }
            }
            try handle.write(contentsOf: buffer)
            progress.finish(counts)
        }
    }
}

/// `switchboard import`: a copy made by `switchboard export`, into a new, empty database.
struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a copy made by `switchboard export` into a new, empty database (migrating it first).",
        discussion: "switchboard import --database postgres://switchboard:secret@127.0.0.1/switchboard --input switchboard.jsonl"
    )

    @OptionGroup var database: DatabaseOptions
    @Option(help: "File to read (default: standard input).") var input: String?

    func run() async throws {
        let handle: FileHandle
        if let input {
            guard let opened = FileHandle(forReadingAtPath: input) else {
                throw Failure(description: "cannot read \(input); check the path")
            }
            handle = opened
        } else {
            handle = FileHandle.standardInput
        }
        let reader = LineReader(handle: handle)
        let progress = ProgressLine(verb: "imported")
        try await database.withStore(logger: makeLogger()) { store in
            guard let store = store as? any TransferableStore else { throw Failure(description: "this backend cannot be imported into") }
            do {
                let counts = try await StoreCopy.import(into: store, progress: progress.show) { try reader.next() }
                progress.finish(counts)
            } catch let error as StoreError {
                throw Failure(description: error.message)
            }
        }
    }
}

/// Progress on standard error: on a terminal one line rewritten in place at most ten times a
/// second (`exported messages 120000/1000000`); otherwise (a log) one line per finished table.
final class ProgressLine {
    private let verb: String
    private let isTerminal = isatty(FileHandle.standardError.fileDescriptor) == 1
    private var lastShown = ContinuousClock.now - .seconds(1)

    init(verb: String) {
        self.verb = verb
    }

    func show(_ progress: StoreCopy.Progress) {
        let isTableDone = progress.done == progress.total
        if isTerminal {
            guard isTableDone || ContinuousClock.now - lastShown >= .milliseconds(100) else { return }
            lastShown = ContinuousClock.now
            write("\r\u{1B}[K\(verb) \(progress.table.rawValue) \(progress.done)/\(progress.total)")
        } else if isTableDone {
            write("\(verb) \(progress.table.rawValue) \(progress.done)/\(progress.total)\n")
        }
    }

    func finish(_ counts: [TransferTable: Int]) {
        let summary = TransferTable.allCases.map { "\(counts[$0] ?? 0) \($0.rawValue)" }.joined(separator: ", ")
        write("\(isTerminal ? "\r\u{1B}[K" : "")\(verb) \(summary)\n")
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Lines of a file read 64 KB at a time, so that a large copy is never held whole.
final class LineReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var isAtEnd = false

    init(handle: FileHandle) {
        self.handle = handle
    }

    /// The next line without its newline; nil at the end.
    func next() throws -> String? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[start..<newline], as: UTF8.self)
                start = newline + 1
                return line
            }
            if isAtEnd {
                guard start < buffer.count else { return nil }
                let line = String(decoding: buffer[start...], as: UTF8.self)
                start = buffer.count
                return line
            }
            buffer.removeFirst(start)
            start = 0
            if let chunk = try handle.read(upToCount: 1 << 16), !chunk.isEmpty {
                buffer.append(contentsOf: chunk)
            } else {
                isAtEnd = true
            }
        }
    }
}

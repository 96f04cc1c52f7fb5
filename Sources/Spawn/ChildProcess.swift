#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A program started with `posix_spawn`, for the agent's exec plugins and the tests that run
/// built binaries.
///
/// Foundation's `Process.run()` on Linux reads `/proc/self/fd` with a 256-byte over-read
/// (swift-corelibs-foundation #5472) that crashes a busy process now and then; this spawns
/// directly. The child starts with no signal blocked and the default action for the signals
/// its parent ignores or handles (SIGPIPE, SIGTERM, SIGINT, SIGHUP), in a process group of its
/// own, with only its three standard descriptors open.
///
/// ```swift
/// let child = try ChildProcess.spawn("/usr/bin/env", arguments: ["true"], standardInput: devNull,
///                                    standardOutput: pipe.write, standardError: pipe.write)
/// let termination = await child.termination()
/// ```
public final class ChildProcess: Sendable {
    /// How a child ended.
    public enum Termination: Sendable, Hashable, CustomStringConvertible {
        /// It exited with this status.
        case exited(Int32)
        /// A signal ended it.
        case signalled(Int32)

        public var description: String {
            switch self {
            case .exited(let status): "exit status \(status)"
            case .signalled(let signal): "signal \(signal)"
            }
        }
    }

    /// Why a program could not be started.
    public struct SpawnError: Error, CustomStringConvertible {
        /// The `errno` value.
        public var code: Int32
        /// What was being done.
        public var message: String

        public var description: String { "\(message): \(String(cString: strerror(code)))" }
    }

    /// The child's process id.
    public let id: pid_t
    private let ended = Mutex<Termination?>(nil)

    private init(id: pid_t) { self.id = id }

    /// Starts `executable` (a path) with `arguments` (without the program's name).
    ///
    /// - Parameters:
    ///   - environment: the child's whole environment.
    ///   - workingDirectory: where it starts; the parent's when nil.
    ///   - standardInput, standardOutput, standardError: descriptors of the parent that become
    ///     the child's 0, 1 and 2. The parent keeps its own and closes them when it wants.
    public static func spawn(
        _ executable: String,
        arguments: [String],
        environment: [String: String],
        workingDirectory: String? = nil,
        standardInput: Int32,
        standardOutput: Int32,
        standardError: Int32
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        try check(posix_spawn_file_actions_init(&actions), "cannot prepare to start \(executable)")
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (source, target) in [(standardInput, Int32(0)), (standardOutput, 1), (standardError, 2)] {
            try check(posix_spawn_file_actions_adddup2(&actions, source, target), "cannot pass descriptor \(target) to \(executable)")
        }
        if let closeFrom = GlibcExtensions.closeFrom {
            try check(closeFrom(&actions, 3), "cannot close the other descriptors for \(executable)")
        }
        if let workingDirectory {
            guard let changeDirectory = GlibcExtensions.changeDirectory else {
                throw SpawnError(code: ENOSYS, message: "cannot start \(executable) in \(workingDirectory)")
            }
            try check(changeDirectory(&actions, workingDirectory), "cannot start \(executable) in \(workingDirectory)")
        }

        var attributes = posix_spawnattr_t()
        try check(posix_spawnattr_init(&attributes), "cannot prepare to start \(executable)")
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&defaultSignals, signal) }
        try check(posix_spawnattr_setsigmask(&attributes, &noSignals), "cannot prepare to start \(executable)")
        try check(posix_spawnattr_setsigdefault(&attributes, &defaultSignals), "cannot prepare to start \(executable)")
        try check(posix_spawnattr_setpgroup(&attributes, 0), "cannot prepare to start \(executable)")
        let flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP
        try check(posix_spawnattr_setflags(&attributes, Int16(flags)), "cannot prepare to start \(executable)")

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid = pid_t()
        try check(posix_spawn(&pid, executable, &actions, &attributes, argv, envp), "cannot start \(executable)")
        return ChildProcess(id: pid)
    }

    /// How the child ended, or nil while it runs. Never blocks.
    public func exitStatus() -> Termination? {
        ended.withLock { ended in
            if let ended { return ended }
            var status: Int32 = 0
            let result = waitpid(id, &status, WNOHANG)
            guard result == id else { return nil }
            // The macros of <sys/wait.h> are not imported into Swift.
            let signal = status & 0x7f
            ended = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
            return ended
        }
    }

    /// Whether the child still runs.
    public var isRunning: Bool { exitStatus() == nil }

    /// Waits until the child ends (checking every few milliseconds) and says how.
    public func termination() async -> Termination {
        while true {
            if let ended = exitStatus() { return ended }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Sends `signal` to the child, or with `toGroup` to its process group (the child and what it
    /// started and did not move elsewhere; the group's id is the child's), while the child has
    /// not been reaped: a reaped id may belong to another process by now.
    public func send(_ signal: Int32, toGroup: Bool = false) {
        ended.withLock { ended in
            if ended == nil { _ = kill(toGroup ? -id : id, signal) }
        }
    }

    private static func check(_ result: Int32, _ message: @autoclosure () -> String) throws {
        guard result == 0 else { throw SpawnError(code: result, message: message()) }
    }
}

/// glibc's non-standard spawn actions, looked up at run time: Swift does not import them
/// (they are behind `_GNU_SOURCE`).
private enum GlibcExtensions {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias ChangeDirectory = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    static let closeFrom: CloseFrom? = lookUp("posix_spawn_file_actions_addclosefrom_np")
    static let changeDirectory: ChangeDirectory? = lookUp("posix_spawn_file_actions_addchdir_np")

    private static func lookUp<Function>(_ name: String) -> Function? {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(symbol, to: Function.self)
    }
}

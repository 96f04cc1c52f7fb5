import Foundation
import NIOCore

/// Where the server is and how the generator runs: what every scenario shares.
struct EnvironmentOptions: Sendable {
    /// The server's HTTP base URL (its WebSocket is `/ws` under it).
    var url: String = "http://127.0.0.1:3001"
    /// Users to act as, `USER_ID TOKEN` a line; more are registered when it holds too few.
    var tokensFile: String?
    /// Where to write the users of the run, to reuse them with `tokensFile`.
    var saveTokens: String?
    /// The server's pid, for its CPU time and memory; found from the port when not given.
    var serverPid: Int32?
    /// Start the bundled server (`switchboard serve`) on a free port with a fresh database.
    var startServer = false
    var serverBinary: String?
    /// Start any server with this shell command; `{port}`, `{database}` and `{dir}` are replaced.
    var serverCommand: String?
    /// More arguments for the bundled server.
    var serverArguments: [String] = []
    /// The started server's database (`{database}`), e.g. a `postgres://` URL; a fresh SQLite file when nil.
    var database: String?
    /// Event-loop threads of the generator.
    var threads = 1
    /// Print the progress line.
    var progress = true
    /// Prefix of registered user names; random when nil, so runs do not collide.
    var userPrefix: String?
    /// Upgrades in flight at once while connecting.
    var connectConcurrency = 256
}

/// Everything a scenario runs with: the server, its process, the generator's threads.
final class BenchEnvironment: Sendable {
    let options: EnvironmentOptions
    let baseURL: String
    let endpoint: WebSocketEndpoint
    let api: ServerAPI
    let server: ServerProcess?
    private let fixedPid: Int32?
    let pool: WorkerPool
    let progress: Progress
    let machine: MachineInfo
    /// Distinguishes this run's users, rooms and client ids.
    let runTag: String
    let openFileLimit: Int

    private init(
        options: EnvironmentOptions, baseURL: String, server: ServerProcess?, fixedPid: Int32?, pool: WorkerPool, progress: Progress,
        openFileLimit: Int
    ) throws {
        self.options = options
        self.baseURL = baseURL
        self.endpoint = try WebSocketEndpoint.from(baseURL: baseURL)
        self.api = ServerAPI(baseURL: baseURL)
        self.server = server
        self.fixedPid = fixedPid
        self.pool = pool
        self.progress = progress
        self.machine = MachineInfo.current()
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        self.runTag = String((0..<6).map { _ in alphabet.randomElement()! })
        self.openFileLimit = openFileLimit
    }

    /// The server's pid when it runs in another process of this machine.
    var serverPid: Int32? { server?.pid ?? fixedPid }

    var userPrefix: String { options.userPrefix ?? "bench-\(runTag)" }

    /// Starts the server when asked, finds its pid, starts the generator's threads.
    static func prepare(_ options: EnvironmentOptions) async throws -> BenchEnvironment {
        let openFileLimit = ProcFS.raiseOpenFileLimit()
        let progress = Progress(enabled: options.progress)
        var server: ServerProcess?
        var baseURL = options.url
        var fixedPid: Int32?
        if options.startServer || options.serverCommand != nil {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-bench-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let command: String
            if let serverCommand = options.serverCommand {
                command = serverCommand
            } else {
                let binary = try ServerLaunch.findBundledBinary(options.serverBinary)
                command = ([Self.shellQuoted(binary), ServerLaunch.bundledServerArguments] + options.serverArguments.map(Self.shellQuoted)).joined(separator: " ")
            }
            let launch = ServerLaunch(command: command, port: try ServerLaunch.freePort(), directory: directory, database: options.database)
            let process = ServerProcess(launch: launch)
            progress.note("starting the server: \(command.replacingOccurrences(of: "{port}", with: "\(launch.port)").replacingOccurrences(of: "{database}", with: launch.databasePath).replacingOccurrences(of: "{dir}", with: directory))")
            try await process.start()
            progress.note("server pid \(process.pid ?? 0) on \(process.baseURL); log in \(launch.logPath)")
            server = process
            baseURL = process.baseURL
        } else {
            fixedPid = options.serverPid
            if fixedPid == nil, let url = URL(string: baseURL), let host = url.host, ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) {
                fixedPid = ProcFS.listeningPid(port: url.port ?? 80)
            }
            if fixedPid == ProcFS.ownPid {
                // The server runs inside the generator (tests): its CPU time cannot be told apart.
                fixedPid = nil
            }
        }
        let pool = try await WorkerPool.make(threads: options.threads)
        return try BenchEnvironment(
            options: options, baseURL: baseURL, server: server, fixedPid: fixedPid, pool: pool, progress: progress, openFileLimit: openFileLimit)
    }

    /// What the report says about the server.
    var serverDescription: ServerDescription {
        ServerDescription(
            url: baseURL, pid: serverPid.map(Int.init), startedByGenerator: server != nil,
            command: server?.launch.command, threads: serverPid.flatMap { ProcFS.threadCount(pid: $0) })
    }

    /// Stops the generator's threads and the server it started.
    func shutdown() async {
        await pool.shutdown()
        if let server {
            await server.stop()
            try? FileManager.default.removeItem(atPath: server.launch.directory)
        }
    }

    static func shellQuoted(_ text: String) -> String {
        if text.allSatisfy({ $0.isLetter || $0.isNumber || "-_./:=".contains($0) }) { return text }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Runs a scenario in a fresh environment and always cleans up.
    static func with<Value: Sendable>(_ options: EnvironmentOptions, _ body: (BenchEnvironment) async throws -> Value) async throws -> Value {
        let environment = try await prepare(options)
        do {
            let value = try await body(environment)
            await environment.shutdown()
            return value
        } catch {
            await environment.shutdown()
            throw error
        }
    }
}

struct ServerDescription: Codable, Sendable {
    var url: String
    var pid: Int?
    var startedByGenerator: Bool
    var command: String?
    var threads: Int?
}

/// CPU readings of the server, the generator and the machine at one moment.
struct CPUSample: Sendable {
    var at: ContinuousClock.Instant
    var server: CPUTimes?
    var generator: CPUTimes
    var machine: MachineTicks?
    /// The server's threads: a server that keeps one thread busy is serialized there, however many cores it has.
    var serverThreads: [Int32: ThreadTimes] = [:]

    struct ThreadTimes: Sendable {
        var name: String
        var times: CPUTimes
    }

    static func take(serverPid: Int32?, threads: Bool = false) -> CPUSample {
        var sample = CPUSample(
            at: .now, server: serverPid.flatMap { ProcFS.cpuTimes(pid: $0) }, generator: ProcFS.ownCPUTimes(),
            machine: ProcFS.machineTicks())
        if threads, let serverPid {
            sample.serverThreads = ProcFS.threadCPUTimes(pid: serverPid).mapValues { ThreadTimes(name: $0.name, times: $0.times) }
        }
        return sample
    }
}

/// One of the server's busiest threads over a measurement.
struct ThreadShare: Codable, Sendable {
    var tid: Int
    var name: String
    /// Cores it kept busy (1.0 is one core, all the time).
    var cores: Double
}

/// CPU used between two samples, and per unit of work (a delivery, a stored message, a connection).
struct CPUFigures: Codable, Sendable {
    var seconds: Double
    /// Server CPU seconds, user and system (from /proc/PID/stat).
    var serverUserSeconds: Double?
    var serverSystemSeconds: Double?
    /// Cores the server kept busy on average (1.0 is one core).
    var serverCores: Double?
    var generatorUserSeconds: Double
    var generatorSystemSeconds: Double
    var generatorCores: Double
    /// Share of all of the machine's CPUs that was busy, 0 to 100.
    var machineBusyPercent: Double?
    var unit: String
    var units: Int
    /// Server CPU per unit of work, user plus system, in microseconds.
    var serverMicrosecondsPerUnit: Double?
    var generatorMicrosecondsPerUnit: Double?
    /// The server's busiest threads.
    var serverBusiestThreads: [ThreadShare] = []

    init(from start: CPUSample, to end: CPUSample, unit: String, units: Int) {
        seconds = (end.at - start.at).seconds
        let generator = end.generator - start.generator
        generatorUserSeconds = generator.user
        generatorSystemSeconds = generator.system
        generatorCores = seconds > 0 ? generator.total / seconds : 0
        if let serverStart = start.server, let serverEnd = end.server {
            let server = serverEnd - serverStart
            serverUserSeconds = server.user
            serverSystemSeconds = server.system
            serverCores = seconds > 0 ? server.total / seconds : 0
            serverMicrosecondsPerUnit = units > 0 ? server.total * 1e6 / Double(units) : nil
        }
        if let machineStart = start.machine, let machineEnd = end.machine {
            machineBusyPercent = MachineTicks.busyShare(from: machineStart, to: machineEnd) * 100
        }
        self.unit = unit
        self.units = units
        generatorMicrosecondsPerUnit = units > 0 ? generator.total * 1e6 / Double(units) : nil
        if seconds > 0 {
            serverBusiestThreads = end.serverThreads.compactMap { tid, thread -> ThreadShare? in
                guard let before = start.serverThreads[tid] else { return nil }
                return ThreadShare(tid: Int(tid), name: thread.name, cores: (thread.times - before.times).total / seconds)
            }
            .sorted { $0.cores > $1.cores }
            .prefix(3)
            .filter { $0.cores >= 0.01 }
            .map { $0 }
        }
    }

    /// Rows for the human table.
    var rows: [(String, String)] {
        var rows: [(String, String)] = []
        if let serverCores, let user = serverUserSeconds, let system = serverSystemSeconds {
            var line = String(format: "%.0f%% of a core (user %.2f s, system %.2f s)", serverCores * 100, user, system)
            if let perUnit = serverMicrosecondsPerUnit { line = String(format: "%.2f µs per %@; ", perUnit, unit) + line }
            rows.append(("server CPU", line))
            if !serverBusiestThreads.isEmpty {
                rows.append(("server busiest threads", serverBusiestThreads.map { String(format: "%@ %.0f%%", $0.name, $0.cores * 100) }.joined(separator: ", ")))
            }
        } else {
            rows.append(("server CPU", "unknown (give --server-pid, or --start-server)"))
        }
        var generator = String(format: "%.0f%% of a core (user %.2f s, system %.2f s)", generatorCores * 100, generatorUserSeconds, generatorSystemSeconds)
        if let perUnit = generatorMicrosecondsPerUnit { generator = String(format: "%.2f µs per %@; ", perUnit, unit) + generator }
        rows.append(("generator CPU", generator))
        if let machineBusyPercent {
            rows.append(("machine busy", String(format: "%.0f%% of %d CPUs", machineBusyPercent, ProcessInfo.processInfo.activeProcessorCount)))
        }
        return rows
    }
}

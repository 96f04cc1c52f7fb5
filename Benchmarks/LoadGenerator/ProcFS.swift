#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// CPU time a process has used, user and system, in seconds.
struct CPUTimes: Sendable, Equatable {
    var user: Double
    var system: Double
    var total: Double { user + system }

    static func - (lhs: CPUTimes, rhs: CPUTimes) -> CPUTimes {
        CPUTimes(user: lhs.user - rhs.user, system: lhs.system - rhs.system)
    }
}

/// Busy and total time of the whole machine, from `/proc/stat`, in clock ticks.
struct MachineTicks: Sendable {
    var busy: UInt64
    var total: UInt64

    /// Share of the machine's CPUs that was busy between two readings, 0 to 1.
    static func busyShare(from start: MachineTicks, to end: MachineTicks) -> Double {
        let total = end.total &- start.total
        guard total > 0 else { return 0 }
        return Double(end.busy &- start.busy) / Double(total)
    }
}

/// Readings from `/proc`: the figures that do not depend on the generator.
enum ProcFS {
    static let ticksPerSecond: Double = {
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        return ticks > 0 ? Double(ticks) : 100
    }()

    static let pageSize: Int = {
        let size = sysconf(Int32(_SC_PAGESIZE))
        return size > 0 ? size : 4096
    }()

    static var ownPid: Int32 { getpid() }

    static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// The fields of `/proc/PID/stat` after the command name, so that `fields[n - 3]` is field `n` of proc(5).
    static func statFields(pid: Int32) -> [Substring]? {
        guard let text = read("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
    }

    /// User and system CPU time of a process (all its threads), from `/proc/PID/stat` fields 14 and 15.
    static func cpuTimes(pid: Int32) -> CPUTimes? {
        guard let fields = statFields(pid: pid), fields.count > 12,
            let user = Double(fields[11]), let system = Double(fields[12])
        else { return nil }
        return CPUTimes(user: user / ticksPerSecond, system: system / ticksPerSecond)
    }

    /// CPU time of each thread of a process, with the thread's name, by thread id.
    static func threadCPUTimes(pid: Int32) -> [Int32: (name: String, times: CPUTimes)] {
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return [:] }
        var threads: [Int32: (name: String, times: CPUTimes)] = [:]
        for entry in tids {
            guard let tid = Int32(entry), let text = read("/proc/\(pid)/task/\(tid)/stat"),
                let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")")
            else { continue }
            let name = String(text[text.index(after: open)..<close])
            let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
            threads[tid] = (name, CPUTimes(user: user / ticksPerSecond, system: system / ticksPerSecond))
        }
        return threads
    }

    /// This process's CPU time, at microsecond resolution.
    static func ownCPUTimes() -> CPUTimes {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return CPUTimes(user: seconds(usage.ru_utime), system: seconds(usage.ru_stime))
    }

    /// Resident memory of a process in bytes (`VmRSS` of `/proc/PID/status`).
    static func residentBytes(pid: Int32) -> Int? {
        guard let text = read("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kilobytes = Int(parts[1]) { return kilobytes * 1024 }
        }
        return nil
    }

    /// Threads of a process.
    static func threadCount(pid: Int32) -> Int? {
        guard let fields = statFields(pid: pid), fields.count > 17 else { return nil }
        return Int(fields[17])
    }

    /// Whether a process exists.
    static func isAlive(pid: Int32) -> Bool {
        FileManager.default.fileExists(atPath: "/proc/\(pid)/stat")
    }

    /// The first line of `/proc/stat`: every CPU's time by kind.
    static func machineTicks() -> MachineTicks? {
        guard let text = read("/proc/stat"), let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard values.count >= 5 else { return nil }
        let idle = values[3] + values[4]
        let total = values.reduce(0, +)
        return MachineTicks(busy: total - idle, total: total)
    }

    /// The process listening on a TCP port of this machine, found through `/proc/net/tcp*` and the
    /// file descriptors of every process. Nil when it cannot be seen (another user's process, a container).
    static func listeningPid(port: Int) -> Int32? {
        var inodes = Set<String>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = read(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 9, fields[3] == "0A" else { continue }
                guard let colon = fields[1].lastIndex(of: ":"), let localPort = Int(fields[1][fields[1].index(after: colon)...], radix: 16),
                    localPort == port
                else { continue }
                inodes.insert(String(fields[9]))
            }
        }
        guard !inodes.isEmpty, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        let targets = Set(inodes.map { "socket:[\($0)]" })
        for entry in entries {
            guard let pid = Int32(entry) else { continue }
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"), targets.contains(link) {
                    return pid
                }
            }
        }
        return nil
    }

    /// Raises this process's open-file limit to its hard limit, for thousands of sockets.
    @discardableResult
    static func raiseOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }
}

/// The machine a run happened on, for the report.
struct MachineInfo: Codable, Sendable {
    var cpus: Int
    var cpuModel: String
    var memoryMB: Int
    var kernel: String
    var loadAverage: String

    static func current() -> MachineInfo {
        let cpuinfo = ProcFS.read("/proc/cpuinfo") ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let meminfo = ProcFS.read("/proc/meminfo") ?? ""
        let memory = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first }
            .flatMap { Int($0) }.map { $0 / 1024 } ?? 0
        let kernel = (ProcFS.read("/proc/sys/kernel/osrelease") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let load = (ProcFS.read("/proc/loadavg") ?? "").split(separator: " ").prefix(3).joined(separator: " ")
        return MachineInfo(cpus: ProcessInfo.processInfo.activeProcessorCount, cpuModel: model, memoryMB: memory, kernel: kernel, loadAverage: load)
    }
}

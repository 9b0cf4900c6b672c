import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A broker process a test starts, crashes and restarts: mosquitto or `databus broker`.
public protocol TestBroker: Sendable {
    /// The port it listens on, on 127.0.0.1.
    var port: Int { get }
    /// SIGKILL, as a crash: no clean shutdown.
    func kill() async
    /// SIGTERM, keeping its folder for ``restart()``.
    func terminate() async
    /// Starts it again with the same configuration, port and persistence folder.
    func restart() async throws
    /// Stops it and removes its folder.
    func stop() async
    /// Starts one on a free port with `extraConfiguration` (mosquitto.conf lines) added.
    static func start(extraConfiguration: String) async throws -> Self
}

extension TestBroker {
    /// Starts a broker, runs `body` with it, and stops it by PID however `body` ends.
    public static func with(extraConfiguration: String = "", _ body: (Self) async throws -> Void) async throws {
        let broker = try await start(extraConfiguration: extraConfiguration)
        do {
            try await body(broker)
        } catch {
            await broker.stop()
            throw error
        }
        await broker.stop()
    }
}

/// Waits until `process` itself (not another one that holds the same port) listens on
/// 127.0.0.1:`port`; `false` when it exits first or takes longer than 15 s.
func waitUntilListening(process: ChildProcess, port: Int) async -> Bool {
    // Generous: with every test suite starting brokers at once, a broker can be slow to start.
    let deadline = ContinuousClock.now + .seconds(15)
    while ContinuousClock.now < deadline {
        guard process.isRunning else { return false }
        switch processListens(pid: process.pid, port: port) {
        case true?:
            return true
        case false?:
            break
        case nil:
            // No /proc: a connection that succeeds, from a process still alive a moment later.
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            {
                try? await channel.close()
                try? await Task.sleep(for: .milliseconds(100))
                return process.isRunning
            }
        }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return false
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port`, read from /proc;
/// `nil` where there is no /proc.
func processListens(pid: pid_t, port: Int) -> Bool? {
    guard let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8) else { return nil }
    let local = "0100007F:" + String(format: "%04X", port)
    var inodes: Set<String> = []
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        guard fields.count > 9, fields[1] == local, fields[3] == "0A" else { continue }
        inodes.insert(String(fields[9]))
    }
    guard !inodes.isEmpty else { return false }
    let fdDirectory = "/proc/\(pid)/fd"
    guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: fdDirectory) else { return false }
    for descriptor in descriptors {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDirectory)/\(descriptor)") else { continue }
        if target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) { return true }
    }
    return false
}

/// A `databus broker` process (the executable built next to the test bundle), started for
/// one test and stopped by PID.
public final class DatabusBrokerProcess: TestBroker, @unchecked Sendable {
    public let port: Int
    /// The broker's folder: configuration and log; persistence may go in it too.
    public let directory: URL
    private let executable: String
    private let processBox: NIOLockedValueBox<ChildProcess>

    private var process: ChildProcess { processBox.withLockedValue { $0 } }
    /// The process id of the running broker (it changes on restart).
    public var pid: pid_t { process.pid }
    private var configurationPath: String { directory.appendingPathComponent("databus.conf").path }
    private var logPath: String { directory.appendingPathComponent("databus.log").path }

    private init(port: Int, directory: URL, executable: String, process: ChildProcess) {
        self.port = port
        self.directory = directory
        self.executable = executable
        self.processBox = NIOLockedValueBox(process)
    }

    /// The `databus` executable next to the test bundle.
    public static func executable() throws -> String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [directory, directory.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("databus").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw InteropError("the databus executable is not built next to the tests (\(directory.path)); run `swift build` first")
    }

    /// Starts `databus broker` on a free port with `allow_anonymous true` and `extraConfiguration`,
    /// which may name `directory` through `{DIRECTORY}`.
    public static func start(extraConfiguration: String = "") async throws -> DatabusBrokerProcess {
        let executable = try executable()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("databus-broker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for _ in 0..<5 {
            let port = try await Mosquitto.freePort()
            let configuration = directory.appendingPathComponent("databus.conf")
            try """
            listener \(port) 127.0.0.1
            allow_anonymous true
            \(extraConfiguration.replacingOccurrences(of: "{DIRECTORY}", with: directory.path))
            """.write(to: configuration, atomically: true, encoding: .utf8)
            let process = try ChildProcess.spawn(
                executable,
                ["broker", "-c", configuration.path],
                errorPath: directory.appendingPathComponent("databus.log").path
            )
            if await waitUntilListening(process: process, port: port) {
                return DatabusBrokerProcess(port: port, directory: directory, executable: executable, process: process)
            }
            if process.isRunning { await process.terminate() }
        }
        let log = (try? String(contentsOf: directory.appendingPathComponent("databus.log"), encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: directory)
        throw InteropError("databus broker did not start listening; its log ends: \(log.split(separator: "\n").suffix(5).joined(separator: " | "))")
    }

    public func kill() async {
        process.signal(SIGKILL)
        await process.wait()
    }

    public func terminate() async {
        if process.isRunning { await process.terminate() }
    }

    public func restart() async throws {
        if process.isRunning { await process.terminate() }
        for _ in 0..<20 {
            let process = try ChildProcess.spawn(executable, ["broker", "-c", configurationPath], errorPath: logPath)
            processBox.withLockedValue { $0 = process }
            if await waitUntilListening(process: process, port: port) { return }
            if process.isRunning { await process.terminate() }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw InteropError("databus broker did not restart on port \(port)")
    }

    public func stop() async {
        if process.isRunning { await process.terminate() }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Sends `signal` to the broker (SIGHUP re-reads its configuration).
    public func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// What the broker logged so far (its standard error).
    public var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// The configuration file, to change before a SIGHUP.
    public var configurationFile: String { configurationPath }
}

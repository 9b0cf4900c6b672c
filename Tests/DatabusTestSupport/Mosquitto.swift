import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A real mosquitto broker on 127.0.0.1, started for one test and stopped by PID.
public final class Mosquitto: TestBroker, @unchecked Sendable {
    public let port: Int
    private let processBox: NIOLockedValueBox<ChildProcess>
    /// The broker's own folder (configuration file); removed by ``stop()``.
    public let directory: URL
    private let executable: String

    private var process: ChildProcess { processBox.withLockedValue { $0 } }
    /// The process id of the running mosquitto (it changes on restart).
    public var pid: pid_t { process.pid }

    private init(port: Int, process: ChildProcess, directory: URL, executable: String) {
        self.port = port
        self.processBox = NIOLockedValueBox(process)
        self.directory = directory
        self.executable = executable
    }

    private var configurationPath: String { directory.appendingPathComponent("mosquitto.conf").path }
    /// mosquitto's standard error, where `log_dest stderr` sends its log.
    private var logPath: String { directory.appendingPathComponent("mosquitto.log").path }

    /// Starts mosquitto with `allow_anonymous true` and any extra configuration lines.
    public static func start(extraConfiguration: String = "") async throws -> Mosquitto {
        guard
            let executable = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
                .first(where: FileManager.default.isExecutableFile(atPath:))
        else { throw InteropError("mosquitto is not installed: run scripts/test, which installs it") }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("databus-mosquitto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // mosquitto started as root drops to the mosquitto user: its files must be readable by anyone.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)

        for _ in 0..<5 {
            let port = try await freePort()
            let configuration = directory.appendingPathComponent("mosquitto.conf")
            try """
            listener \(port) 127.0.0.1
            allow_anonymous true
            persistence false
            log_dest stderr
            \(extraConfiguration)
            """.write(to: configuration, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: configuration.path)

            let process = try ChildProcess.spawn(
                executable,
                ["-c", configuration.path],
                errorPath: directory.appendingPathComponent("mosquitto.log").path
            )
            let broker = Mosquitto(port: port, process: process, directory: directory, executable: executable)
            if await broker.waitUntilListening() { return broker }
            // Another process took the port first: try another one in the same folder.
            if process.isRunning { await process.terminate() }
        }
        let log = (try? String(contentsOf: directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: directory)
        throw InteropError("mosquitto did not start listening; its log ends: \(log.split(separator: "\n").suffix(5).joined(separator: " | "))")
    }

    /// Waits until this mosquitto process (not another one that holds the same port) listens.
    private func waitUntilListening() async -> Bool {
        await DatabusTestSupport.waitUntilListening(process: process, port: port)
    }

    /// Stops mosquitto by its PID and removes its folder.
    public func stop() async {
        if process.isRunning { await process.terminate() }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Kills mosquitto with SIGKILL, as a crash would: no clean shutdown, no persistence save.
    public func kill() async {
        process.signal(SIGKILL)
        await process.wait()
    }

    /// Starts mosquitto again with the same configuration and port (after ``kill()`` or
    /// ``terminate()``), so a persistence folder named in the configuration is read back.
    public func restart() async throws {
        if process.isRunning { await process.terminate() }
        for _ in 0..<20 {
            let process = try ChildProcess.spawn(executable, ["-c", configurationPath], errorPath: logPath)
            processBox.withLockedValue { $0 = process }
            if await waitUntilListening() { return }
            // The port may still be held for a moment after the previous process died.
            if process.isRunning { await process.terminate() }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw InteropError("mosquitto did not restart on port \(port)")
    }

    /// Stops mosquitto with SIGTERM (it saves its persistence) and keeps its folder, for ``restart()``.
    public func terminate() async {
        await process.terminate()
    }

    /// Freezes mosquitto (SIGSTOP): connections stay open but nothing is answered.
    public func pause() {
        process.signal(SIGSTOP)
    }

    /// Lets a paused mosquitto run again (SIGCONT).
    public func resume() {
        process.signal(SIGCONT)
    }

    /// Ports handed out by ``freePort()`` in this process, never handed out twice.
    private static let handedOut = NIOLockedValueBox<Set<Int>>([])

    /// A TCP port on 127.0.0.1 that is free now and that no other test of this process was given.
    ///
    /// Chosen below the kernel's ephemeral range when it can be, so that no `bind(port: 0)`
    /// or outgoing connection of a test running in parallel can take it before mosquitto binds it.
    public static func freePort() async throws -> Int {
        let ephemeralStart =
            (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32_768
        let range = 10_000..<max(10_001, min(ephemeralStart, 65_536))
        for attempt in 0..<200 {
            let candidate: Int
            if range.count > 1_000 {
                candidate = Int.random(in: range)
                guard handedOut.withLockedValue({ !$0.contains(candidate) }) else { continue }
                // Free now? Bind it once to see.
                guard
                    let channel = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .bind(host: "127.0.0.1", port: candidate).get()
                else { continue }
                try await channel.close()
            } else {
                let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .bind(host: "127.0.0.1", port: 0).get()
                candidate = channel.localAddress?.port ?? 0
                try await channel.close()
            }
            if handedOut.withLockedValue({ $0.insert(candidate).inserted }) { return candidate }
            _ = attempt
        }
        throw InteropError("no free port that was not handed out before")
    }
}

public struct InteropError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

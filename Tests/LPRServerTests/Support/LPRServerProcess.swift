import DatabusTestSupport
import Foundation
import MQTTClient
import NIOConcurrencyHelpers

/// A `databus server` process a test starts, kills and restarts, stopped by PID.
final class LPRServerProcess: Sendable {
    let arguments: [String]
    let environment: [String]
    let logPath: String
    private let process: NIOLockedValueBox<ChildProcess?>

    /// Starts `databus server` with these arguments and `NAME=value` environment settings, and
    /// waits until it has announced itself online on `lprserver/system/status`.
    static func start(brokerPort: Int, arguments: [String], environment: [String] = [], logPath: String) async throws -> LPRServerProcess {
        let server = LPRServerProcess(
            arguments: ["--broker", "mqtt://127.0.0.1:\(brokerPort)"] + arguments,
            environment: environment,
            logPath: logPath
        )
        try await server.launch(brokerPort: brokerPort)
        return server
    }

    private init(arguments: [String], environment: [String], logPath: String) {
        self.arguments = arguments
        self.environment = environment
        self.logPath = logPath
        self.process = NIOLockedValueBox(nil)
    }

    var isRunning: Bool { process.withLockedValue { $0?.isRunning ?? false } }

    /// Starts the process again with the same arguments and waits until it is ready.
    func launch(brokerPort: Int) async throws {
        let executable = try DatabusBrokerProcess.executable()
        // A watcher that sees the server's own fresh `online` (its retained one may be stale).
        let watcher = MQTTClient(
            configuration: .init(host: "127.0.0.1", port: brokerPort, clientIdentifier: "ready-\(UUID().uuidString)"),
            logger: testLogger
        )
        try await watcher.connect()
        defer { Task { await watcher.disconnect() } }
        let status = try await Inbox.subscribe(watcher, to: "lprserver/system/status")
        try await Task.sleep(for: .milliseconds(100))
        let before = status.messages.count
        let child = try ChildProcess.spawn("/usr/bin/env", environment + [executable, "server"] + arguments, errorPath: logPath)
        process.withLockedValue { $0 = child }
        let deadline = ContinuousClock.now + .seconds(30)
        while !status.messages.dropFirst(before).contains(where: { $0.payloadString == "online" && !$0.retain }) {
            guard child.isRunning else { throw InteropError("databus server exited: \(log.suffix(800))") }
            guard ContinuousClock.now < deadline else { throw InteropError("databus server did not come online: \(log.suffix(800))") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// SIGKILL: a crash.
    func kill() async {
        guard let child = process.withLockedValue({ $0 }) else { return }
        child.signal(SIGKILL)
        _ = await child.wait()
    }

    /// SIGTERM, then waits for it to exit.
    func stop() async {
        guard let child = process.withLockedValue({ $0 }), child.isRunning else { return }
        _ = await child.terminate(timeout: .seconds(10))
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

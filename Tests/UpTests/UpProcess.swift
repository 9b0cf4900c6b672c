import DatabusTestSupport
import Foundation
import NIOConcurrencyHelpers

/// A `databus up` process a test starts on free ports, reads the banner of, and stops by PID.
final class UpProcess: Sendable {
    let data: String
    let outputPath: String
    let errorPath: String
    let child: ChildProcess
    /// From the banner.
    let dashboard: URL
    let mqttPort: Int

    /// Starts `databus up --data DATA --mqtt 127.0.0.1:0 --http 127.0.0.1:0 ARGUMENTS` and waits for its banner.
    static func start(data: String, arguments: [String] = [], timeout: Duration = .seconds(60)) async throws -> UpProcess {
        let executable = try DatabusBrokerProcess.executable()
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("databus-up-\(UUID().uuidString)").path
        let child = try ChildProcess.spawn(
            executable,
            ["up", "--data", data, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"] + arguments,
            outputPath: base + ".out",
            errorPath: base + ".err"
        )
        let deadline = ContinuousClock.now + timeout
        while true {
            let output = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
            if output.contains("The REST API:"), let dashboard = Self.value(after: "Dashboard", in: output).flatMap(URL.init(string:)),
                let mqtt = Self.value(after: "MQTT", in: output), let port = Int(mqtt.split(separator: ":").last?.split(separator: " ").first ?? "")
            {
                return UpProcess(data: data, outputPath: base + ".out", errorPath: base + ".err", child: child, dashboard: dashboard, mqttPort: port)
            }
            guard child.isRunning else {
                throw InteropError("databus up exited: \((try? String(contentsOfFile: base + ".err", encoding: .utf8))?.suffix(1500) ?? "")")
            }
            guard ContinuousClock.now < deadline else {
                let log = (try? String(contentsOfFile: base + ".err", encoding: .utf8))?.suffix(1500) ?? ""
                _ = await child.terminate()
                throw InteropError("databus up printed no banner within \(timeout): \(log)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private init(data: String, outputPath: String, errorPath: String, child: ChildProcess, dashboard: URL, mqttPort: Int) {
        self.data = data
        self.outputPath = outputPath
        self.errorPath = errorPath
        self.child = child
        self.dashboard = dashboard
        self.mqttPort = mqttPort
    }

    /// The first word after `label` on the banner line that starts with it.
    static func value(after label: String, in output: String) -> String? {
        for line in output.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix(label + " ") else { continue }
            return trimmed.dropFirst(label.count).trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init)
        }
        return nil
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var log: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }
    var httpPort: Int { dashboard.port ?? 0 }
    var adminToken: String {
        ((try? String(contentsOfFile: data + "/api-token", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }
    var readOnlyToken: String {
        ((try? String(contentsOfFile: data + "/api-token-read-only", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// SIGTERM; returns the exit status.
    @discardableResult
    func stop(timeout: Duration = .seconds(20)) async -> Int32 {
        await child.terminate(timeout: timeout)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: outputPath)
        try? FileManager.default.removeItem(atPath: errorPath)
    }
}

/// Runs `body` with a fresh `databus up` in a temporary data folder and stops it however `body` ends.
func withUp(arguments: [String] = [], _ body: (UpProcess) async throws -> Void) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let up = try await UpProcess.start(data: directory.file("data"), arguments: arguments)
    defer { up.remove() }
    do {
        try await body(up)
    } catch {
        await up.stop()
        throw InteropError("\(error)\n--- databus up log ---\n\(up.log.suffix(3000))")
    }
    await up.stop()
}

import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import Logging
import MQTTClient
import NIOConcurrencyHelpers
import Testing

let cameraTestLogger: Logger = {
    var logger = Logger(label: "databus.camera.test")
    logger.logLevel = ProcessInfo.processInfo.environment["DATABUS_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
    return logger
}()

/// A `databus camera` process a test starts, kills with SIGKILL and starts again.
final class CameraProcess: Sendable {
    let arguments: [String]
    let environment: [String]
    let logPath: String
    let inputPath: String?
    private let process = NIOLockedValueBox<ChildProcess?>(nil)

    /// Starts `databus camera` with `arguments` and `NAME=value` settings; `MQTT_RECONNECT_DELAY`
    /// and `MQTT_MAX_RECONNECT_DELAY` default to fast reconnects.
    init(arguments: [String], environment: [String] = [], inputPath: String? = nil, logPath: String) throws {
        self.arguments = arguments
        self.environment = ["MQTT_RECONNECT_DELAY=0.05", "MQTT_MAX_RECONNECT_DELAY=0.3"] + environment
        self.inputPath = inputPath
        self.logPath = logPath
        try launch()
    }

    func launch() throws {
        let executable = try DatabusBrokerProcess.executable()
        let child = try ChildProcess.spawn(
            "/usr/bin/env",
            environment + [executable, "camera"] + arguments,
            inputPath: inputPath,
            errorPath: logPath
        )
        process.withLockedValue { $0 = child }
    }

    var isRunning: Bool { process.withLockedValue { $0?.isRunning ?? false } }

    /// SIGKILL: a crash, nothing cleaned up.
    func kill() async {
        guard let child = process.withLockedValue({ $0 }) else { return }
        child.signal(SIGKILL)
        _ = await child.wait()
    }

    /// SIGTERM and wait.
    @discardableResult
    func stop() async -> Int32 {
        guard let child = process.withLockedValue({ $0 }), child.isRunning else { return -1 }
        return await child.terminate(timeout: .seconds(10))
    }

    /// Waits for the process to exit by itself.
    func wait(timeout: Duration = .seconds(60)) async -> Int32 {
        guard let child = process.withLockedValue({ $0 }) else { return -1 }
        return await child.wait(timeout: timeout)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// A `databus server` process with its SQLite store in `folder`, stopped by PID.
final class ServerProcess: Sendable {
    let child: ChildProcess
    let database: String
    let logPath: String

    /// Starts the server and waits until it announces itself `online` (not the retained word of an earlier one).
    static func start(brokerPort: Int, folder: TemporaryDirectory, name: String = "server") async throws -> ServerProcess {
        let database = folder.file("\(name).sqlite")
        let logPath = folder.file("\(name).log")
        if !FileManager.default.fileExists(atPath: folder.file("none.env")) { try folder.write("none.env", "") }
        let watcher = MQTTClient(
            configuration: .init(host: "127.0.0.1", port: brokerPort, clientIdentifier: "ready-\(UUID().uuidString.prefix(8))"),
            logger: cameraTestLogger
        )
        try await watcher.connect()
        defer { Task { await watcher.disconnect() } }
        let status = MessageLog(try await watcher.subscribe(to: "lprserver/system/status"))
        try await Task.sleep(for: .milliseconds(100))
        let child = try ChildProcess.spawn(
            try DatabusBrokerProcess.executable(),
            ["server", "--broker", "mqtt://127.0.0.1:\(brokerPort)", "--database", "sqlite:\(database)", "--env-file", folder.file("none.env")],
            errorPath: logPath
        )
        let server = ServerProcess(child: child, database: database, logPath: logPath)
        let deadline = ContinuousClock.now + .seconds(30)
        while !status.messages.contains(where: { $0.payloadString == "online" && !$0.retain }) {
            guard child.isRunning else { throw InteropError("databus server exited: \(server.log.suffix(800))") }
            guard ContinuousClock.now < deadline else { throw InteropError("databus server did not come online: \(server.log.suffix(800))") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return server
    }

    private init(child: ChildProcess, database: String, logPath: String) {
        self.child = child
        self.database = database
        self.logPath = logPath
    }

    func stop() async { await child.terminate(timeout: .seconds(10)) }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// What a client received, collected in the background.
final class MessageLog: Sendable {
    private let received = NIOLockedValueBox<[MQTTMessage]>([])
    private let reader: Task<Void, Never>

    init(_ messages: MQTTMessages) {
        let received = self.received
        reader = Task { for await message in messages { received.withLockedValue { $0.append(message) } } }
    }

    deinit { reader.cancel() }

    var messages: [MQTTMessage] { received.withLockedValue { $0 } }
}

/// Waits until `condition` holds, up to `timeout`; false when it never did.
func eventually(within timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// A small HTTP client for the agent's `--listen` endpoint, through curl.
enum CameraHTTP {
    /// POSTs `body` to `/detections` and returns the status and the answer.
    static func post(port: Int, _ body: String, in folder: TemporaryDirectory) async throws -> (status: Int, body: JSONValue?) {
        let file = folder.file("post-\(UUID().uuidString).json")
        try body.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let result = try await runProgram(
            "curl",
            ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "--data-binary", "@\(file)", "http://127.0.0.1:\(port)/detections"]
        )
        var lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.popLast() ?? "") ?? 0
        return (status, try? JSONValue.parse(lines.joined(separator: "\n")))
    }

    static func status(port: Int) async throws -> JSONValue? {
        let result = try await runProgram("curl", ["-s", "http://127.0.0.1:\(port)/status"])
        return try? JSONValue.parse(result.output)
    }

    /// Waits until the agent answers on `port`.
    static func waitUntilListening(port: Int) async -> Bool {
        await eventually(within: .seconds(30)) { (try? await status(port: port)) != nil }
    }
}

/// The seed's detection with this id, camera and plate.
func seedDetection(
    id: String,
    camera: String = "CAM001",
    plate: String = "ABC1234",
    confidence: Double? = nil,
    envelope: Bool = true
) throws -> JSONObject {
    var json = try JSONObject.parse(Fixtures.example("lpr-detection.json"))
    json["message_id"] = .string(id)
    json["camera_id"] = envelope ? .string(camera) : nil
    if !envelope {
        json["timestamp"] = nil
        json["checkpoint_id"] = nil
    }
    var data = try #require(json["detection_data"]?.objectValue)
    var plates = try #require(data["plates"]?.arrayValue)
    var first = try #require(plates.first?.objectValue)
    first["plate_number"] = .string(plate)
    if let confidence {
        first["confidence"] = .double(confidence)
        data["confidence_score"] = .double(confidence)
    }
    plates[0] = .object(first)
    data["plates"] = .array(plates)
    json["detection_data"] = .object(data)
    return json
}

/// How many of `ids` a server's SQLite store holds, each found by its `message_id`, and how many detections it holds in all.
func stored(_ ids: [String], in database: String) async throws -> (found: Int, total: Int) {
    guard FileManager.default.fileExists(atPath: database) else { return (0, 0) }
    let repository = try SQLiteLPRRepository(path: database)
    var found = 0
    for id in ids where try await repository.detection(messageID: id) != nil { found += 1 }
    return (found, try await repository.detectionCount())
}

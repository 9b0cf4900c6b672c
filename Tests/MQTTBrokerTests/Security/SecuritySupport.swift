import DatabusTestSupport
import Foundation
import MQTTBroker
import MQTTCore
import NIOCore

/// Sends CONNECT with credentials (and optionally a will, from another loopback address) and
/// returns the connection with the broker's CONNACK.
func connectWithCredentials(
    port: Int,
    _ clientIdentifier: String,
    username: String? = nil,
    password: String? = nil,
    version: MQTTProtocolVersion = .v5,
    will: ConnectPacket.Will? = nil,
    from sourceAddress: String? = nil
) async throws -> (CodecConnection, ConnAckPacket) {
    let connection = try await CodecConnection.connect(port: port, version: version, from: sourceAddress)
    try await connection.send(
        .connect(
            ConnectPacket(
                protocolVersion: version,
                clientIdentifier: clientIdentifier,
                keepAlive: 30,
                username: username,
                password: password.map { ByteBuffer(string: $0) },
                will: will
            )
        )
    )
    let packet = try await connection.receive(within: 20)
    guard case .connack(let connack) = packet else {
        await connection.close()
        throw InteropError("expected CONNACK, got \(packet)")
    }
    return (connection, connack)
}

/// Runs `program` and returns its exit status with what it wrote to stdout and stderr.
func runCapturingBoth(_ program: String, _ arguments: [String], timeout: Duration = .seconds(20)) async throws -> (status: Int32, output: String) {
    let base = FileManager.default.temporaryDirectory.appendingPathComponent("databus-run-\(UUID().uuidString)").path
    defer {
        try? FileManager.default.removeItem(atPath: base + ".out")
        try? FileManager.default.removeItem(atPath: base + ".err")
    }
    let child = try ChildProcess.spawn(program, arguments, outputPath: base + ".out", errorPath: base + ".err")
    let status = await child.wait(timeout: timeout)
    let output =
        ((try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "") + ((try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "")
    return (status, output)
}

/// Runs mosquitto_pub with `arguments` and returns its exit status and output (both streams).
func mosquittoPub(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await runCapturingBoth("/usr/bin/mosquitto_pub", arguments)
}

/// A running `databus broker` process with a configuration file in `folder`.
struct BrokerProcess {
    let process: ChildProcess
    let port: Int
    let configurationFile: String

    static func start(_ template: String, in folder: TemporaryDirectory) async throws -> BrokerProcess {
        let file = folder.file("databus.conf")
        let (process, port) = try await startBrokerProcess(configuration: template, file: file)
        return BrokerProcess(process: process, port: port, configurationFile: file)
    }

    /// SIGHUP, then a moment for the broker to re-read its files.
    func reload() async throws {
        process.signal(SIGHUP)
        try await Task.sleep(for: .milliseconds(400))
    }

    func stop() async { _ = await process.terminate() }

    /// Starts a broker, runs `body`, and stops the broker by its PID however `body` ends.
    static func with(_ template: String, in folder: TemporaryDirectory, _ body: (BrokerProcess) async throws -> Void) async throws {
        let broker = try await start(template, in: folder)
        do {
            try await body(broker)
        } catch {
            await broker.stop()
            throw error
        }
        await broker.stop()
    }
}

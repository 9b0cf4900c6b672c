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

/// Runs `program` and returns its exit status with what it wrote to stdout and stderr together.
func runCapturingBoth(_ program: String, _ arguments: [String], timeout: Duration = .seconds(20)) async throws -> (status: Int32, output: String) {
    let result = try await runProgramCollectingErrors(program, arguments, timeout: timeout)
    return (result.status, result.output + result.errorOutput)
}

/// Runs mosquitto_pub with `arguments` and returns its exit status and output (both streams).
func mosquittoPub(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await runCapturingBoth("/usr/bin/mosquitto_pub", arguments)
}

extension DatabusBrokerProcess {
    /// SIGHUP, then a moment for the broker to re-read its files.
    func reload() async throws {
        signal(SIGHUP)
        try await Task.sleep(for: .milliseconds(400))
    }
}

import DatabusTestSupport
import MQTTCore

/// A connection that sends whatever bytes a test gives it (malformed packets included) and
/// decodes what the broker answers: CodecConnection writes raw bytes and packet batches as given.
typealias RawConnection = CodecConnection

extension CodecConnection {
    /// A 5.0 connection, CONNECT not yet sent.
    static func connect(port: Int) async throws -> CodecConnection {
        try await connect(port: port, version: .v5)
    }

    /// Connects and completes a CONNECT/CONNACK handshake with `clientIdentifier`.
    static func connected(port: Int, _ clientIdentifier: String, version: MQTTProtocolVersion = .v5) async throws -> CodecConnection {
        let connection = try await connect(port: port, version: version)
        let connack = try await connection.handshake(clientIdentifier: clientIdentifier)
        guard connack.reasonCode == .success else {
            throw InteropError("expected a successful CONNACK, got \(connack.reasonCode)")
        }
        return connection
    }
}

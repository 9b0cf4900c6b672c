import MQTTCore

/// Where the client's connection is; see ``MQTTClient/states``.
public enum ConnectionState: Sendable, Hashable, CustomStringConvertible {
    /// Not running: never started, stopped by ``MQTTClient/disconnect()``, or gave up reconnecting.
    case stopped
    /// Opening TCP/TLS and waiting for CONNACK.
    case connecting
    /// CONNACK accepted the connection; `sessionPresent` says whether the broker kept the session.
    case connected(sessionPresent: Bool)
    /// The connection ended, or an attempt failed, and why.
    case disconnected(DisconnectReason)
    /// Waiting this long before the next attempt.
    case backingOff(Duration)

    public var description: String {
        switch self {
        case .stopped: "stopped"
        case .connecting: "connecting"
        case .connected(let sessionPresent): "connected (session present: \(sessionPresent))"
        case .disconnected(let reason): "disconnected: \(reason)"
        case .backingOff(let delay): "backing off \(delay)"
        }
    }
}

/// Why a connection ended or an attempt failed.
public enum DisconnectReason: Error, Sendable, Hashable, CustomStringConvertible {
    /// TCP or TLS could not be set up, or the connection closed before CONNACK.
    case connectionFailed(String)
    /// CONNACK carried this failure reason code.
    case connectionRefused(ReasonCode)
    /// The connection closed without a DISCONNECT from the broker.
    case connectionLost(String)
    /// The broker sent DISCONNECT (MQTT 5) with this reason code and reason string.
    case serverDisconnected(ReasonCode, String?)
    /// No PINGRESP came back in time: the connection was dead.
    case keepAliveTimeout
    /// The broker broke the protocol; the client closed the connection.
    case protocolError(String)
    /// The credentials provider, or the enhanced authentication's data or responder, threw.
    case credentialsUnavailable(String)
    /// ``MQTTClient/disconnect()`` was called.
    case clientDisconnected

    public var description: String {
        switch self {
        case .connectionFailed(let why): "connection failed: \(why)"
        case .connectionRefused(let code): "connection refused: \(code)"
        case .connectionLost(let why): "connection lost: \(why)"
        case .serverDisconnected(let code, let why): "broker disconnected: \(code)\(why.map { " (\($0))" } ?? "")"
        case .keepAliveTimeout: "keep alive timeout"
        case .protocolError(let why): "protocol error: \(why)"
        case .credentialsUnavailable(let why): "credentials unavailable: \(why)"
        case .clientDisconnected: "client disconnected"
        }
    }
}

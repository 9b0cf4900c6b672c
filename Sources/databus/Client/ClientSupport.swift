import ArgumentParser
import Foundation
import Logging
import MQTTClient
import MQTTCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What `databus pub` and `databus sub` share at run time: messages on standard error, raw
/// writes to standard output, logging, and exit codes as mosquitto's clients use them.
struct ClientConsole: Sendable {
    /// `--quiet`: no run-time error messages.
    let quiet: Bool

    /// Writes a line to standard error unless `--quiet`.
    func error(_ message: String) {
        guard !quiet else { return }
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// Writes bytes to standard output at once (no buffering), so that a reader sees every
    /// message as it arrives.
    static func writeOutput(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }

    /// Logs to standard error: errors only, everything with `-d`, nothing with `--quiet`.
    static func bootstrapLogging(_ options: ClientOptions, label: String) -> Logger {
        let level: Logger.Level = options.debug ? .debug : options.quiet ? .critical : .error
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }

    /// Prints why the first connection failed and returns the exit code mosquitto's clients
    /// use: the CONNACK return code (3.1.1) or reason code (5) when the broker refused, 1 otherwise.
    func connectionFailed(_ error: any Error, configuration: MQTTClient.Configuration) -> ExitCode {
        guard let clientError = error as? MQTTClientError else {
            self.error("Error: \(error)")
            return .failure
        }
        switch clientError.code {
        case .connectionRefused:
            let code = clientError.reasonCode ?? .unspecifiedError
            if configuration.protocolVersion != .v5 {
                let returnCode = ConnectReturnCode(code)
                self.error(
                    "Connection error: the broker refused the connection: \(Self.describe(returnCode)) (CONNACK return code \(returnCode.rawValue))."
                )
                return ExitCode(Int32(returnCode.rawValue))
            }
            if code == .badAuthenticationMethod, let method = configuration.enhancedAuthentication?.method {
                self.error("Connection error: the broker refused the connection: it does not support the authentication method \(method) (\(code)).")
            } else {
                self.error("Connection error: the broker refused the connection: \(code).")
            }
            return ExitCode(Int32(code.rawValue))
        case .connectionFailed:
            var why = clientError.message
            if why.hasPrefix("connection failed: ") { why.removeFirst("connection failed: ".count) }
            if why.contains("Connection refused") { why = "connection refused (is a broker listening there?)" }
            self.error("Error: could not connect to \(configuration.host):\(configuration.port): \(why)")
            return .failure
        default:
            self.error("Error: \(clientError.message)")
            return .failure
        }
    }

    /// What a 3.1.1 CONNACK return code means.
    static func describe(_ returnCode: ConnectReturnCode) -> String {
        switch returnCode {
        case .accepted: "accepted"
        case .unacceptableProtocolVersion: "unacceptable protocol version"
        case .identifierRejected: "client identifier rejected"
        case .serverUnavailable: "server unavailable"
        case .badUserNameOrPassword: "bad user name or password"
        case .notAuthorized: "not authorized"
        }
    }

    /// A reconnect policy for the command-line clients: 1 s doubling to 30 s, for ever.
    static let reconnectPolicy = ReconnectPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(30))
}

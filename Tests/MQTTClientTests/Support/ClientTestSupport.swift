import DatabusTestSupport
import Foundation
import Logging
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// A logger for clients under test: warnings and worse only, so test output stays readable;
/// `DATABUS_TEST_LOG=debug` (or another level) shows more.
let testLogger: Logger = {
    var logger = Logger(label: "databus.mqtt-client.test")
    logger.logLevel = ProcessInfo.processInfo.environment["DATABUS_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
    return logger
}()

extension MQTTClient.Configuration {
    /// A configuration for a broker started by a test, reconnecting quickly.
    static func test(_ broker: any TestBroker, id: String, version: MQTTProtocolVersion = .v5) -> Self {
        var configuration = Self(host: "127.0.0.1", port: broker.port, clientIdentifier: id, protocolVersion: version)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
        configuration.connectTimeout = .seconds(5)
        return configuration
    }
}

/// Makes a client, runs `body` with it, and disconnects it however `body` ends.
@discardableResult
func withClient<T>(
    _ configuration: MQTTClient.Configuration,
    clock: any Clock<Duration> = ContinuousClock(),
    connect: Bool = true,
    _ body: (MQTTClient) async throws -> T
) async throws -> T {
    let client = MQTTClient(configuration: configuration, clock: clock, logger: testLogger)
    do {
        if connect { try await client.connect() }
        let result = try await body(client)
        await client.disconnect()
        return result
    } catch {
        await client.disconnect()
        throw error
    }
}

/// The next `count` messages of a sequence.
func collect(_ messages: MQTTMessages, count: Int, timeout: Duration = .seconds(20)) async throws -> [MQTTMessage] {
    try await withDeadline(timeout, "waiting for \(count) messages") {
        var received: [MQTTMessage] = []
        for await message in messages {
            received.append(message)
            if received.count == count { break }
        }
        return received
    }
}

/// Waits until the client's state satisfies `predicate` and returns that state.
@discardableResult
func waitForState(
    _ client: MQTTClient,
    timeout: Duration = .seconds(20),
    _ predicate: @escaping @Sendable (ConnectionState) -> Bool
) async throws -> ConnectionState {
    try await waitForState(client.states, timeout: timeout, predicate)
}

/// Waits until a state of `states` satisfies `predicate` and returns that state. Take the
/// sequence before causing the change, so the change cannot be missed.
@discardableResult
func waitForState(
    _ states: AsyncStream<ConnectionState>,
    timeout: Duration = .seconds(20),
    _ predicate: @escaping @Sendable (ConnectionState) -> Bool
) async throws -> ConnectionState {
    try await withDeadline(timeout, "waiting for a connection state") {
        for await state in states where predicate(state) { return state }
        throw InteropError("the state sequence ended")
    }
}

extension ConnectionState {
    var isConnected: Bool { if case .connected = self { true } else { false } }
    var isBackingOff: Bool { if case .backingOff = self { true } else { false } }
}

/// Numbers counted by several tasks.
actor Counter {
    private(set) var values: [Int] = []
    func append(_ value: Int) { values.append(value) }
    var count: Int { values.count }
}

/// Records an issue unless `payloads` are the numbers of `expected` in order; on a mismatch it
/// names the first difference instead of printing thousands of payloads.
func expectNumbered(_ payloads: [String], _ expected: Range<Int>, sourceLocation: SourceLocation = #_sourceLocation) {
    let wanted = expected.map(String.init)
    guard payloads != wanted else { return }
    let firstDifference = Array(zip(payloads, wanted)).firstIndex { $0 != $1 } ?? min(payloads.count, wanted.count)
    let context = payloads[max(0, firstDifference - 3)..<min(payloads.count, firstDifference + 5)]
    Issue.record(
        "\(payloads.count) payloads, expected \(wanted.count); first difference at \(firstDifference): \(Array(context))",
        sourceLocation: sourceLocation
    )
}

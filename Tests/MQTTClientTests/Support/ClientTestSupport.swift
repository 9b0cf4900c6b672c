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

/// The brokers the client's tests run against: Debian's mosquitto, so that the client never
/// depends on our own broker, and `databus broker`.
enum TestBrokerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case mosquitto
    case databus

    var testDescription: String { self == .mosquitto ? "mosquitto" : "databus broker" }

    /// Starts this broker with `extraConfiguration` (mosquitto.conf lines), runs `body` with it,
    /// and stops it by PID however `body` ends.
    func with(extraConfiguration: String = "", _ body: (any TestBroker) async throws -> Void) async throws {
        switch self {
        case .mosquitto: try await Mosquitto.with(extraConfiguration: extraConfiguration) { try await body($0) }
        case .databus: try await DatabusBrokerProcess.with(extraConfiguration: extraConfiguration) { try await body($0) }
        }
    }
}

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

/// Runs `body` and throws when it takes longer than `timeout` (a safety net, never an assertion on time).
///
/// On timeout `body` is cancelled and the call returns at once, even if `body` ignores the
/// cancellation: a test fails instead of hanging.
func withDeadline<T: Sendable>(_ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = AsyncOutcome<T>()
    let work = Task {
        do {
            outcome.complete(.success(try await body()))
        } catch {
            outcome.complete(.failure(error))
        }
    }
    let timer = Task {
        try await Task.sleep(for: timeout)
        outcome.complete(.failure(InteropError("\(what): nothing after \(timeout)")))
        work.cancel()
    }
    defer { timer.cancel() }
    return try await outcome.value()
}

/// A result that arrives once, from whichever task is first.
final class AsyncOutcome<T: Sendable>: Sendable {
    private let state = NIOLockedValueBox<(result: Result<T, any Error>?, waiter: CheckedContinuation<T, any Error>?)>((nil, nil))

    func complete(_ result: Result<T, any Error>) {
        let waiter: CheckedContinuation<T, any Error>? = state.withLockedValue { state in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<T, any Error>? = state.withLockedValue { state in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
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

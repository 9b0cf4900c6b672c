import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import Logging
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// A logger for tests: warnings and worse, unless `DATABUS_TEST_LOG` says otherwise.
let testLogger: Logger = {
    var logger = Logger(label: "databus.lpr-server.test")
    logger.logLevel = ProcessInfo.processInfo.environment["DATABUS_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
    return logger
}()

/// An LPR server running in this process against a broker a test started, with its SQLite store.
struct LPRServerHarness: Sendable {
    let broker: any TestBroker
    let server: LPRServer
    let repository: any LPRRepository
    let directory: TemporaryDirectory
}

extension MQTTClient.Configuration {
    /// A client of a broker started by a test, reconnecting quickly.
    static func test(_ broker: any TestBroker, id: String, version: MQTTProtocolVersion = .v5) -> Self {
        var configuration = Self(host: "127.0.0.1", port: broker.port, clientIdentifier: id, protocolVersion: version)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
        configuration.connectTimeout = .seconds(5)
        return configuration
    }
}

/// Starts an LPR server (SQLite in a temporary folder, or `repository`) against `broker`, waits
/// until it is ready, runs `body`, and stops the server however `body` ends.
func withLPRServer(
    broker: any TestBroker,
    repository: (any LPRRepository)? = nil,
    configure: (inout LPRServerConfiguration) -> Void = { _ in },
    _ body: (LPRServerHarness) async throws -> Void
) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var configuration = LPRServerConfiguration(mqtt: .test(broker, id: "lprserver_v3"))
    configuration.systemInterval = .seconds(1)
    configure(&configuration)
    let store = try repository ?? SQLiteLPRRepository(path: directory.file("lpr.sqlite"), durability: .processCrash)
    let server = LPRServer(configuration: configuration, repository: store, logger: testLogger)
    let running = Task { try await server.run() }
    do {
        try await withDeadline(.seconds(20), "the LPR server to be ready") { try await server.waitUntilReady() }
        try await body(LPRServerHarness(broker: broker, server: server, repository: store, directory: directory))
    } catch {
        await server.shutdown()
        running.cancel()
        _ = await running.result
        throw error
    }
    await server.shutdown()
    _ = await running.result
}

/// Starts a broker of `kind` and an LPR server on it.
func withLPRServer(
    _ kind: TestBrokerKind,
    brokerConfiguration: String = "",
    configure: (inout LPRServerConfiguration) -> Void = { _ in },
    _ body: (LPRServerHarness) async throws -> Void
) async throws {
    try await kind.with(extraConfiguration: brokerConfiguration) { broker in
        try await withLPRServer(broker: broker, configure: configure, body)
    }
}

/// Makes a client, runs `body` with it, and disconnects it however `body` ends.
@discardableResult
func withClient<T>(_ configuration: MQTTClient.Configuration, _ body: (MQTTClient) async throws -> T) async throws -> T {
    let client = MQTTClient(configuration: configuration, logger: testLogger)
    do {
        try await client.connect()
        let result = try await body(client)
        await client.disconnect()
        return result
    } catch {
        await client.disconnect()
        throw error
    }
}

/// Collects what a client receives, in the background, so a test can wait for a message that
/// satisfies a condition or count what came.
final class Inbox: Sendable {
    private let received = NIOLockedValueBox<[MQTTMessage]>([])
    private let reader: Task<Void, Never>

    init(_ messages: MQTTMessages) {
        let received = self.received
        reader = Task {
            for await message in messages { received.withLockedValue { $0.append(message) } }
        }
    }

    /// Subscribes `client` to `filter` and collects what comes.
    static func subscribe(_ client: MQTTClient, to filter: String, qos: QoS = .atLeastOnce) async throws -> Inbox {
        Inbox(try await client.subscribe(to: filter, qos: qos))
    }

    deinit { reader.cancel() }

    var messages: [MQTTMessage] { received.withLockedValue { $0 } }

    /// The JSON objects received on `topic` (or all).
    func objects(topic: String? = nil) -> [JSONObject] {
        messages.filter { topic == nil || $0.topic == topic }.compactMap { try? JSONObject.parse($0.payload.readableBytesView) }
    }

    /// The first message satisfying `predicate`, waiting up to `timeout` for it.
    @discardableResult
    func first(
        timeout: Duration = .seconds(15),
        _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation,
        where predicate: (MQTTMessage) -> Bool
    ) async throws -> MQTTMessage {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let message = messages.first(where: predicate) { return message }
            guard ContinuousClock.now < deadline else {
                let seen = messages.suffix(5).map { "\($0.topic): \($0.payloadString.prefix(200))" }
                throw InteropError("no \(what) within \(timeout); the last messages: \(seen)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The first JSON object on `topic` satisfying `predicate`.
    func firstObject(
        topic: String,
        timeout: Duration = .seconds(15),
        _ what: String,
        where predicate: (JSONObject) -> Bool = { _ in true }
    ) async throws -> JSONObject {
        let message = try await first(timeout: timeout, what) { message in
            guard message.topic == topic, let object = try? JSONObject.parse(message.payload.readableBytesView) else { return false }
            return predicate(object)
        }
        return try JSONObject.parse(message.payload.readableBytesView)
    }

    /// Waits until `count` messages satisfy `predicate`.
    func wait(count: Int, timeout: Duration = .seconds(30), _ what: String, where predicate: (MQTTMessage) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while messages.filter(predicate).count < count {
            guard ContinuousClock.now < deadline else {
                throw InteropError("\(messages.filter(predicate).count) of \(count) \(what) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// The seed's detection with this id, camera and plate.
func seedDetection(id: String, camera: String = "CAM001", checkpoint: String = "CP001", plate: String = "ABC1234") throws -> JSONObject {
    var json = try JSONObject.parse(Fixtures.example("lpr-detection.json"))
    json["message_id"] = .string(id)
    json["camera_id"] = .string(camera)
    json["checkpoint_id"] = .string(checkpoint)
    var data = try #require(json["detection_data"]?.objectValue)
    var plates = try #require(data["plates"]?.arrayValue)
    var first = try #require(plates.first?.objectValue)
    first["plate_number"] = .string(plate)
    plates[0] = .object(first)
    data["plates"] = .array(plates)
    json["detection_data"] = .object(data)
    return json
}

extension MQTTClient {
    /// Publishes a JSON object.
    @discardableResult
    func publish(
        json: JSONObject,
        to topic: String,
        qos: QoS = .atLeastOnce,
        retain: Bool = false,
        properties: Properties = []
    ) async throws
        -> PublishResult
    {
        try await publish(
            topic: topic,
            payload: ByteBuffer(bytes: JSONValue.object(json).jsonBytes),
            qos: qos,
            retain: retain,
            properties: properties
        )
    }
}

extension MQTTMessage {
    /// The payload as a JSON object, or an empty one.
    var object: JSONObject { (try? JSONObject.parse(payload.readableBytesView)) ?? [:] }
}

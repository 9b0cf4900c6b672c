import AsyncHTTPClient
import Foundation
import LPRModel
import Logging
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// `databus gateway`: the site gateway's MQTT client, bridging MQTT to its local web API.
///
/// - Logs in with the gateway's serial number (`GET /api/crypto`) as username and a JWT fresh
///   from `POST /api/jwt/create` as password, fetched before every connect and reconnect.
/// - Turns each request on `{prefix}/modbus/request` into a web API call and publishes the
///   answer on `{prefix}/modbus/response`.
/// - Publishes the API's state on `{prefix}/state` once connected and then every 5 s, or a
///   fallback state when the API does not answer.
/// - Reconnects after 1 s, doubling up to 30 s.
public final class Gateway: Sendable {
    public struct Options: Sendable {
        public var brokerHost: String
        public var brokerPort: Int
        public var webHost: String
        public var webPort: Int
        /// TLS to the broker; `nil` for plain TCP (tests and trusted networks only).
        public var tls: MQTTClient.TLS?
        /// The first level of the topics: `iamcat` by default.
        public var topicPrefix: String
        public var stateInterval: Duration
        /// How long one web API call may take.
        public var httpTimeout: Duration
        /// Our version, in the fallback state.
        public var version: String
        /// Where the time of the last successful state publish is written, for `--check`.
        public var healthFile: String?
        public var clientIdentifier: String
        public var protocolVersion: MQTTProtocolVersion

        public init(
            brokerHost: String = "localhost",
            brokerPort: Int = 8883,
            webHost: String = "localhost",
            webPort: Int = 80,
            tls: MQTTClient.TLS? = MQTTClient.TLS(),
            topicPrefix: String = "iamcat",
            stateInterval: Duration = .seconds(5),
            httpTimeout: Duration = .seconds(10),
            version: String,
            healthFile: String? = GatewayHealth.defaultPath,
            clientIdentifier: String? = nil,
            protocolVersion: MQTTProtocolVersion = .v3_1_1
        ) {
            self.brokerHost = brokerHost
            self.brokerPort = brokerPort
            self.webHost = webHost
            self.webPort = webPort
            self.tls = tls
            self.topicPrefix = topicPrefix
            self.stateInterval = stateInterval
            self.httpTimeout = httpTimeout
            self.version = version
            self.healthFile = healthFile
            self.clientIdentifier = clientIdentifier ?? "gateway-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            self.protocolVersion = protocolVersion
        }

        public var requestTopic: String { "\(topicPrefix)/modbus/request" }
        public var responseTopic: String { "\(topicPrefix)/modbus/response" }
        public var stateTopic: String { "\(topicPrefix)/state" }
    }

    /// The reconnect schedule: 1 s, doubling, up to 30 s, without jitter.
    public static let reconnectPolicy = ReconnectPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(30), multiplier: 2, jitter: .none)

    public let options: Options
    public let client: MQTTClient
    public let api: GatewayWebAPI
    private let http: HTTPClient
    private let logger: Logger
    private let started = Date()
    private let counters = NIOLockedValueBox(Counters())

    /// What the gateway has done so far.
    public struct Counters: Sendable, Hashable {
        public var logins = 0
        public var requests = 0
        public var invalidRequests = 0
        public var statesPublished = 0
        public var fallbackStates = 0
    }

    public var counts: Counters { counters.withLockedValue { $0 } }

    /// - Parameters:
    ///   - clock: the clock of the reconnect backoff (tests pass a manual one).
    public init(options: Options, clock: any Clock<Duration> = ContinuousClock(), logger: Logger = Logger(label: "databus.gateway")) {
        self.options = options
        self.logger = logger
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.timeout = .init(connect: TimeAmount(options.httpTimeout), read: TimeAmount(options.httpTimeout))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        self.http = http
        let api = GatewayWebAPI(host: options.webHost, port: options.webPort, timeout: options.httpTimeout, http: http)
        self.api = api
        var configuration = MQTTClient.Configuration(
            host: options.brokerHost,
            port: options.brokerPort,
            clientIdentifier: options.clientIdentifier,
            protocolVersion: options.protocolVersion,
            tls: options.tls
        )
        configuration.reconnect = Self.reconnectPolicy
        let counters = self.counters
        configuration.credentialsProvider = {
            // Fresh for every attempt: the token lives 5 minutes and is never reused.
            let serial = try await api.serialNumber()
            let token = try await api.createJWT()
            counters.withLockedValue { $0.logins += 1 }
            logger.debug("fetched credentials", metadata: ["serial": "\(serial)"])
            return (serial, Array(token.utf8))
        }
        self.client = MQTTClient(configuration: configuration, clock: clock, logger: logger)
    }

    /// Runs until the task is cancelled; then disconnects and closes the HTTP client.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.keepConnected() }
            group.addTask { await self.serveRequests() }
            group.addTask { await self.publishStates() }
            await group.next()
            group.cancelAll()
        }
        await client.disconnect()
        try? await http.shutdown()
    }

    private func keepConnected() async {
        await withTaskCancellationHandler {
            do {
                try await client.runUntilStopped()
            } catch {
                logger.error("the MQTT client stopped: \(error)")
            }
        } onCancel: {
            Task { await self.client.disconnect() }
        }
    }

    // MARK: Modbus requests

    private func serveRequests() async {
        let requests: MQTTMessages
        do {
            requests = try await client.subscribe(to: options.requestTopic, qos: .atLeastOnce)
        } catch {
            logger.error("cannot subscribe to \(options.requestTopic): \(error)")
            return
        }
        await withDiscardingTaskGroup { group in
            for await message in requests {
                group.addTask { await self.handle(message) }
            }
        }
    }

    /// Answers one request; never throws: whatever goes wrong becomes an error response.
    func handle(_ message: MQTTMessage) async {
        counters.withLockedValue { $0.requests += 1 }
        let bytes = Array(message.payload.readableBytesView)
        let answer: JSONValue
        do {
            let request = try ModbusRequest(payload: bytes)
            let response = await api.modbus(request)
            answer = GatewayMessages.modbusResponse(request: request.original, response: response, at: Date())
        } catch {
            counters.withLockedValue { $0.invalidRequests += 1 }
            logger.warning("invalid modbus request: \(error.reason)")
            answer = GatewayMessages.modbusResponse(request: error.received, response: GatewayMessages.failure(error.reason), at: Date())
        }
        do {
            try await client.publish(topic: options.responseTopic, payload: ByteBuffer(bytes: answer.jsonBytes), qos: .atLeastOnce)
        } catch {
            logger.error("cannot publish the modbus response: \(error)")
        }
    }

    // MARK: State

    private func publishStates() async {
        var periodic: Task<Void, Never>?
        var started = false
        for await state in client.states {
            switch state {
            case .connected:
                started = true
                logger.info("connected", metadata: ["broker": "\(options.brokerHost):\(options.brokerPort)"])
                periodic?.cancel()
                periodic = Task {
                    while !Task.isCancelled {
                        await self.publishState()
                        try? await Task.sleep(for: self.options.stateInterval)
                    }
                }
            case .stopped:
                // The first state may be the stopped of a client not yet started.
                guard started else { continue }
                periodic?.cancel()
                return
            default:
                started = true
                periodic?.cancel()
                periodic = nil
            }
        }
        periodic?.cancel()
    }

    /// Fetches `GET /api/state` and publishes it, or the fallback state.
    public func publishState() async {
        let now = Date()
        let message: JSONValue
        do {
            let state = try await api.json(.GET, "/api/state")
            guard case .object = state else { throw GatewayAPIError("GET /api/state answered \(state.typeName), not an object") }
            message = GatewayMessages.state(api: state, at: now)
        } catch {
            counters.withLockedValue { $0.fallbackStates += 1 }
            logger.warning("web API state unavailable: \(error)")
            message = GatewayMessages.fallbackState(
                uptime: Date().timeIntervalSince(started),
                version: options.version,
                error: "Failed to fetch state from web container: \(error)",
                at: now
            )
        }
        do {
            let result = try await client.publish(topic: options.stateTopic, payload: ByteBuffer(bytes: message.jsonBytes), qos: .atLeastOnce)
            guard result.isSuccess else {
                logger.warning("the broker refused the state", metadata: ["reason": "\(result.reasonCode)"])
                return
            }
            counters.withLockedValue { $0.statesPublished += 1 }
            if let healthFile = options.healthFile {
                do {
                    try GatewayHealth.record(Date(), at: healthFile)
                } catch {
                    logger.error("cannot write the health file \(healthFile): \(error)")
                }
            }
        } catch {
            logger.warning("cannot publish the state: \(error)")
        }
    }
}

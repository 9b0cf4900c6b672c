import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// MQTT 5 enhanced authentication: the AUTH exchange before CONNACK.
@Suite("Enhanced authentication", .serialized, .timeLimit(.minutes(2)))
struct EnhancedAuthenticationTests {
    @Test("a broker without the method refuses with 0x8C, and connect() says so", arguments: TestBrokerKind.allCases)
    func unknownMethodRefused(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "camera-21")
            configuration.enhancedAuthentication = MQTTClient.EnhancedAuthentication(
                method: "SCRAM-SHA-256",
                initialData: { ByteBuffer(string: "n,,n=camera-21,r=nonce") },
                respond: { _ in
                    Issue.record("the broker sent no challenge")
                    return nil
                }
            )
            let camera = MQTTClient(configuration: configuration, logger: testLogger)
            do {
                try await camera.connect()
                Issue.record("connected with an authentication method the broker does not know")
                await camera.disconnect()
            } catch let error as MQTTClientError {
                #expect(error.code == .connectionRefused)
                #expect(error.reasonCode == .badAuthenticationMethod)
                #expect(error.message.contains("does not support the authentication method SCRAM-SHA-256"))
            }
            #expect(camera.state == .stopped)
        }
    }

    @Test("AUTH 0x18 challenges go to the responder and its answers back, until CONNACK")
    func challengeResponse() async throws {
        let server = try await ScriptedAuthenticationServer.start(challenges: ["challenge-1", "challenge-2"])
        defer { server.stop() }
        let initialCalls = NIOLockedValueBox(0)
        let challengesSeen = NIOLockedValueBox<[String]>([])
        var configuration = MQTTClient.Configuration(host: "127.0.0.1", port: server.port, clientIdentifier: "camera-22")
        configuration.reconnect = .disabled
        configuration.connectTimeout = .seconds(5)
        configuration.enhancedAuthentication = MQTTClient.EnhancedAuthentication(
            method: "databus-test",
            initialData: {
                initialCalls.withLockedValue { $0 += 1 }
                return ByteBuffer(string: "hello")
            },
            respond: { challenge in
                let text = challenge.map { String(buffer: $0) } ?? ""
                challengesSeen.withLockedValue { $0.append(text) }
                return ByteBuffer(string: "answer to \(text)")
            }
        )
        try await withClient(configuration) { client in
            #expect(client.state.isConnected)
        }
        #expect(initialCalls.withLockedValue { $0 } == 1)
        #expect(challengesSeen.withLockedValue { $0 } == ["challenge-1", "challenge-2"])
        let received = server.received
        #expect(received.first == "CONNECT databus-test hello")
        #expect(Array(received.dropFirst()) == ["AUTH databus-test answer to challenge-1", "AUTH databus-test answer to challenge-2"])
    }

    @Test("a responder that throws ends the attempt with credentialsUnavailable")
    func responderFailure() async throws {
        let server = try await ScriptedAuthenticationServer.start(challenges: ["challenge-1"])
        defer { server.stop() }
        var configuration = MQTTClient.Configuration(host: "127.0.0.1", port: server.port, clientIdentifier: "camera-23")
        configuration.reconnect = .disabled
        configuration.connectTimeout = .seconds(5)
        configuration.enhancedAuthentication = MQTTClient.EnhancedAuthentication(method: "databus-test") { _ in
            throw InteropError("no key for this challenge")
        }
        let client = MQTTClient(configuration: configuration, logger: testLogger)
        await #expect {
            try await client.connect()
        } throws: { error in
            (error as? MQTTClientError)?.code == .credentialsUnavailable && "\(error)".contains("no key for this challenge")
        }
    }
}

/// A fake MQTT 5 broker for one test: answers CONNECT with one AUTH 0x18 per challenge,
/// each after the client's previous AUTH, then CONNACK; records what the client sent.
final class ScriptedAuthenticationServer: Sendable {
    private let channel: any Channel
    private let log: NIOLockedValueBox<[String]>
    let port: Int

    private init(channel: any Channel, log: NIOLockedValueBox<[String]>) {
        self.channel = channel
        self.log = log
        self.port = channel.localAddress?.port ?? 0
    }

    /// What the client sent: "CONNECT method data", "AUTH method data", ...
    var received: [String] { log.withLockedValue { $0 } }

    static func start(challenges: [String]) async throws -> ScriptedAuthenticationServer {
        let log = NIOLockedValueBox<[String]>([])
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: .v5)))
                    try pipeline.addHandler(MessageToByteHandler(MQTTPacketEncoder(version: .v5)))
                    try pipeline.addHandler(Script(challenges: challenges, log: log))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return ScriptedAuthenticationServer(channel: channel, log: log)
    }

    func stop() {
        channel.close(promise: nil)
    }

    private final class Script: ChannelInboundHandler {
        typealias InboundIn = MQTTPacket
        typealias OutboundOut = MQTTPacket

        private var challenges: [String]
        private let log: NIOLockedValueBox<[String]>
        private var method = ""

        init(challenges: [String], log: NIOLockedValueBox<[String]>) {
            self.challenges = challenges
            self.log = log
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let properties: Properties
            switch unwrapInboundIn(data) {
            case .connect(let connect):
                properties = connect.properties
                method = properties.authenticationMethod ?? ""
                record("CONNECT", properties)
            case .auth(let auth):
                properties = auth.properties
                record("AUTH", properties)
            case .disconnect:
                context.close(promise: nil)
                return
            default:
                return
            }
            if challenges.isEmpty {
                let connack = ConnAckPacket(properties: [.authenticationMethod(method), .authenticationData(ByteBuffer(string: "welcome"))])
                context.writeAndFlush(wrapOutboundOut(.connack(connack)), promise: nil)
            } else {
                let challenge = challenges.removeFirst()
                let auth = AuthPacket(
                    reasonCode: .continueAuthentication,
                    properties: [.authenticationMethod(method), .authenticationData(ByteBuffer(string: challenge))]
                )
                context.writeAndFlush(wrapOutboundOut(.auth(auth)), promise: nil)
            }
        }

        private func record(_ packet: String, _ properties: Properties) {
            let data = properties.authenticationData.map { String(buffer: $0) } ?? ""
            log.withLockedValue { $0.append("\(packet) \(properties.authenticationMethod ?? "") \(data)") }
        }
    }
}

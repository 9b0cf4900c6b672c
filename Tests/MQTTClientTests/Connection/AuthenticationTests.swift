import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// User name and password against a password file made by mosquitto_passwd, in mosquitto and
/// in databus broker.
@Suite("Authentication with a password file", .serialized, .timeLimit(.minutes(2)))
struct AuthenticationTests {
    /// Starts a broker that accepts only `camera-17` / `s3cret` from its password file.
    static func withPasswordBroker(_ kind: TestBrokerKind, _ body: (any TestBroker) async throws -> Void) async throws {
        let directory = try TemporaryDirectory(prefix: "databus-passwords")
        defer { directory.remove() }
        let passwordFile = directory.file("passwords")
        let created = try await runProgram("mosquitto_passwd", ["-b", "-c", passwordFile, "camera-17", "s3cret"])
        #expect(created.status == 0)
        try directory.makeReadable("passwords")
        try await kind.with(extraConfiguration: "allow_anonymous false\npassword_file \(passwordFile)", body)
    }

    @Test("the right password connects and publishes", arguments: TestBrokerKind.allCases, [MQTTProtocolVersion.v3_1_1, .v5])
    func rightPassword(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await Self.withPasswordBroker(kind) { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "camera-17", version: version)
            configuration.username = "camera-17"
            configuration.password = Array("s3cret".utf8)
            try await withClient(configuration) { camera in
                let result = try await camera.publish(topic: "lprserver/cameras/17/status", payload: "online", qos: .atLeastOnce)
                #expect(result.isSuccess)
            }
        }
    }

    @Test("a wrong password or none is refused with the broker's reason code", arguments: TestBrokerKind.allCases, [MQTTProtocolVersion.v3_1_1, .v5])
    func wrongPassword(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await Self.withPasswordBroker(kind) { broker in
            for password in ["wrong", nil] as [String?] {
                var configuration = MQTTClient.Configuration.test(broker, id: "camera-17", version: version)
                configuration.username = password == nil ? nil : "camera-17"
                configuration.password = password.map { Array($0.utf8) }
                let camera = MQTTClient(configuration: configuration, logger: testLogger)
                do {
                    try await camera.connect()
                    Issue.record("connected with password \(password ?? "none")")
                    await camera.disconnect()
                } catch let error as MQTTClientError {
                    #expect(error.code == .connectionRefused)
                    let refusals: Set<ReasonCode?> = [.badUserNameOrPassword, .notAuthorized]
                    #expect(refusals.contains(error.reasonCode))
                }
                #expect(camera.state == .stopped)
            }
        }
    }
}

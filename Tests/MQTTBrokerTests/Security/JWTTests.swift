import Crypto
import DatabusTestSupport
import Foundation
import JWTKit
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// The claims a gateway's token carries.
private struct DeviceToken: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var aud: AudienceClaim?
    var iss: IssuerClaim?

    init(subject: String, expires: Date, notBefore: Date? = nil, audience: String? = nil, issuer: String? = nil) {
        sub = SubjectClaim(value: subject)
        exp = ExpirationClaim(value: expires)
        nbf = notBefore.map { NotBeforeClaim(value: $0) }
        aud = audience.map { AudienceClaim(value: [$0]) }
        iss = issuer.map { IssuerClaim(value: $0) }
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

@Suite("JWT logins", .serialized)
struct JWTTests {
    let deviceKey = ES256PrivateKey()
    let otherKey = ES256PrivateKey()
    let sharedSecret = "a shared secret of more than thirty-two bytes"

    private func sign(_ token: DeviceToken, with key: ES256PrivateKey) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: key)
        return try await keys.sign(token)
    }

    private func signHS256(_ token: DeviceToken) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: sharedSecret), digestAlgorithm: .sha256)
        return try await keys.sign(token)
    }

    /// A token with `alg: none` and no signature, as an attacker would craft it.
    private func unsigned(subject: String) -> String {
        func encode(_ json: String) -> String {
            Data(json.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_")
        }
        let expires = Int(Date().timeIntervalSince1970) + 600
        return encode(#"{"alg":"none","typ":"JWT"}"#) + "." + encode(#"{"sub":"\#(subject)","exp":\#(expires)}"#) + "."
    }

    /// A broker that takes JWTs signed by the device key (ES256 only), audience "lpr-broker".
    private func withJWTBroker(algorithms: [String] = ["ES256"], _ body: (Int) async throws -> Void) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let publicKey = try folder.write("device.pem", deviceKey.publicKey.pemRepresentation)
        var settings = JWTSettings()
        settings.keyFiles = [publicKey]
        if algorithms.contains("HS256") { settings.keyFiles.append(try folder.write("secret", sharedSecret)) }
        settings.algorithms = algorithms
        settings.audience = "lpr-broker"
        settings.clockSkew = 5
        try await withBroker(
            .testing {
                $0.allowAnonymous = false
                $0.security.jwt = settings
            },
            body
        )
    }

    /// Each refusal counts against the client's address (login throttle): tests that fail
    /// many times use an address of their own per case.
    private func connectCode(
        _ port: Int,
        username: String?,
        token: String,
        version: MQTTProtocolVersion = .v5,
        from address: String? = nil
    ) async throws -> ReasonCode {
        let (connection, connack) = try await connectWithCredentials(
            port: port,
            "gw-\(UUID().uuidString.prefix(8))",
            username: username,
            password: token,
            version: version,
            from: address
        )
        await connection.close()
        return connack.reasonCode
    }

    @Test("a good token admits the device, in both protocol versions; without a username the claim becomes it")
    func goodToken() async throws {
        let token = try await sign(DeviceToken(subject: "SN-1234", expires: Date() + 300, audience: "lpr-broker"), with: deviceKey)
        try await withJWTBroker { port in
            let v5 = try await connectCode(port, username: "SN-1234", token: token)
            #expect(v5 == .success)
            let v3 = try await connectCode(port, username: "SN-1234", token: token, version: .v3_1_1)
            #expect(v3 == .success)
            let noUsername = try await connectCode(port, username: nil, token: token)
            #expect(noUsername == .success)
        }
    }

    @Test("refused: expired, not yet valid, wrong key, alg none, HS256 where only ES256 is allowed, another device's token, wrong audience")
    func refusals() async throws {
        let now = Date()
        let expired = try await sign(DeviceToken(subject: "SN-1", expires: now - 60, audience: "lpr-broker"), with: deviceKey)
        let notYet = try await sign(
            DeviceToken(subject: "SN-1", expires: now + 600, notBefore: now + 300, audience: "lpr-broker"),
            with: deviceKey
        )
        let wrongKey = try await sign(DeviceToken(subject: "SN-1", expires: now + 300, audience: "lpr-broker"), with: otherKey)
        let hs256 = try await signHS256(DeviceToken(subject: "SN-1", expires: now + 300, audience: "lpr-broker"))
        let otherDevice = try await sign(DeviceToken(subject: "SN-2", expires: now + 300, audience: "lpr-broker"), with: deviceKey)
        let otherAudience = try await sign(DeviceToken(subject: "SN-1", expires: now + 300, audience: "billing"), with: deviceKey)
        let cases: [(String, String, ReasonCode)] = [
            ("expired", expired, .badUserNameOrPassword),
            ("not yet valid", notYet, .badUserNameOrPassword),
            ("wrong key", wrongKey, .badUserNameOrPassword),
            ("alg none", unsigned(subject: "SN-1"), .badUserNameOrPassword),
            ("HS256", hs256, .badUserNameOrPassword),
            ("other device", otherDevice, .notAuthorized),
            ("audience", otherAudience, .notAuthorized),
            ("not a JWT", "password123", .badUserNameOrPassword),
        ]
        try await withJWTBroker { port in
            for (index, (name, token, expected)) in cases.enumerated() {
                let address = "127.0.1.\(index + 1)"
                let v5 = try await connectCode(port, username: "SN-1", token: token, from: address)
                #expect(v5 == expected, "\(name)")
                // 3.1.1 has return codes 4 (bad user name or password) and 5 (not authorized).
                let v3 = try await connectCode(port, username: "SN-1", token: token, version: .v3_1_1, from: address)
                #expect(v3 == expected, "\(name), 3.1.1")
            }
        }
    }

    @Test("HS256 with a shared secret when jwt_algorithms lists it")
    func sharedSecretWhenAllowed() async throws {
        let token = try await signHS256(DeviceToken(subject: "SN-9", expires: Date() + 300, audience: "lpr-broker"))
        try await withJWTBroker(algorithms: ["ES256", "HS256"]) { port in
            let code = try await connectCode(port, username: "SN-9", token: token)
            #expect(code == .success)
        }
    }

    @Test("configuration errors: a short HS256 secret, a key the algorithms do not list, no key at all")
    func configurationErrors() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let short = try folder.write("short", "too short")
        let pem = try folder.write("device.pem", deviceKey.publicKey.pemRepresentation)
        let cases: [(String, [String], String)] = [
            ("short secret", ["HS256"], short),
            ("ES256 key, HS256 only", ["HS256"], pem),
            ("no key at all", ["ES256"], ""),
        ]
        for (name, algorithms, file) in cases {
            var configuration = BrokerConfiguration.testing()
            var settings = JWTSettings()
            settings.keyFiles = file.isEmpty ? [] : [file]
            settings.algorithms = algorithms
            configuration.security.jwt = settings
            var failed = false
            do { try await MQTTBroker.checkSecurityFiles(configuration) } catch { failed = true }
            #expect(failed, "\(name)")
        }
        let parsed = try MosquittoConfigParser.parse("listener 1883\njwt_algorithms ES256,HS256\njwt_keyfile \(pem)\njwt_audience lpr\n")
        #expect(parsed.security.jwt?.algorithms == ["ES256", "HS256"])
        #expect(parsed.security.jwt?.keyFiles == [pem])
        #expect(throws: ConfigurationError.self) { try MosquittoConfigParser.parse("listener 1883\njwt_algorithms none\n") }
    }
}

@Suite("Login throttle", .serialized)
struct LoginThrottleTests {
    @Test("one address keeps failing: its CONNACKs wait longer and longer; good clients elsewhere connect and publish at full speed")
    func attackerSlowedAloneHere() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        var passwords = PasswordFile()
        passwords.set("backend", PasswordHash(hashing: Array("b4ckend".utf8), algorithm: .pbkdf2SHA512(iterations: 101)))
        let path = try folder.write("passwd", passwords.text)
        var configuration = BrokerConfiguration.testing {
            $0.allowAnonymous = false
            $0.security.passwordFile = path
        }
        configuration.metricsListener = .init(port: 0, address: "127.0.0.1")
        let broker = MQTTBroker(configuration: configuration)
        let port = try await broker.start()[0].port!
        do {
            // The attacker, from 127.0.0.2, fails eight times in a row.
            let clock = ContinuousClock()
            var waits: [Duration] = []
            let attacker = Task {
                var waits: [Duration] = []
                for attempt in 1...8 {
                    let start = clock.now
                    let (connection, connack) = try await connectWithCredentials(
                        port: port,
                        "guess-\(attempt)",
                        username: "backend",
                        password: "guess\(attempt)",
                        from: "127.0.0.2"
                    )
                    waits.append(clock.now - start)
                    #expect(connack.reasonCode == .notAuthorized)
                    await connection.close()
                }
                return waits
            }
            // Meanwhile the good clients, from 127.0.0.1, connect ten times and publish 2,000 QoS 1 messages.
            let (subscriber, _) = try await connectWithCredentials(port: port, "server", username: "backend", password: "b4ckend")
            try await subscriber.send(
                .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "lpr/#", options: .init(qos: .atLeastOnce))]))
            )
            _ = try await subscriber.receive()
            var received = 0
            for round in 0..<10 {
                let (camera, connack) = try await connectWithCredentials(port: port, "camera-\(round)", username: "backend", password: "b4ckend")
                #expect(connack.reasonCode == .success)
                let batch = (1...200).map { index in
                    MQTTPacket.publish(
                        PublishPacket(
                            topicName: "lpr/cam/\(round)",
                            payload: ByteBuffer(string: "\(index)"),
                            qos: .atLeastOnce,
                            packetIdentifier: UInt16(index)
                        )
                    )
                }
                try await camera.send(batch)
                var acknowledged = 0
                while acknowledged < 200 {
                    if case .puback = try await camera.receive() { acknowledged += 1 }
                }
                while received < (round + 1) * 200 {
                    if case .publish(let publish) = try await subscriber.receive() {
                        received += 1
                        try await subscriber.send(.puback(PubAckPacket(packetIdentifier: publish.packetIdentifier!)))
                    }
                }
                await camera.close()
            }
            #expect(received == 2_000)
            waits = try await attacker.value
            // Three free failures, then 100, 200, 400, 800 and 1,600 ms holds.
            #expect(waits[7] >= .milliseconds(1_500), "\(waits)")
            #expect(waits[5] >= .milliseconds(350), "\(waits)")

            // Only the attacker's five held CONNACKs were throttled: none of the good clients'.
            let metrics = try await runProgram(
                "python3",
                [
                    "-c", "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1],timeout=5).read().decode())",
                    "http://127.0.0.1:\(broker.metricsAddress!.port!)/metrics",
                ]
            )
            #expect(metrics.output.contains("databus_connects_throttled_total 5"), "\(metrics.output)")
            #expect(metrics.output.contains("databus_authentication_failures_total 8"), "\(metrics.output)")
            await subscriber.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }
}

import DatabusTestSupport
import EdgeAgents
import Foundation
import JWTKit
import LPRModel
import Testing

/// The site gateway's local web API, as a small Python HTTP server: serial number, HS256 JWTs
/// signed with a key only it and the broker hold, state and Modbus calls. It logs each call.
struct TestWebAPI {
    static let secret = "the gateway signing key, thirty-two bytes or more"
    static let serial = "GW-0042"

    static let script = #"""
        import sys, json, time, hmac, hashlib, base64
        from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
        from urllib.parse import urlparse, parse_qs
        port, secret, log_path = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
        issued = [0]
        def b64(data): return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        def token():
            issued[0] += 1
            now = int(time.time())
            header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            claims = b64(json.dumps({"sub": "GW-0042", "iat": now, "exp": now + 300, "jti": str(issued[0])}).encode())
            signature = b64(hmac.new(secret, (header + "." + claims).encode(), hashlib.sha256).digest())
            return header + "." + claims + "." + signature
        def log(line):
            with open(log_path, "a") as f: f.write(line + "\n")
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args): pass
            def answer(self, status, body, kind="application/json"):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def do_GET(self):
                log("GET " + self.path)
                if self.path == "/api/crypto":
                    self.answer(200, json.dumps({"serialNumber": "GW-0042", "publicKey": "-"}))
                elif self.path == "/api/state":
                    self.answer(200, '{"status": "online", "uptime": 1234567890.123, "version": "1.0.0", "connected_devices": 3, "network_status": "connected", "memory_usage": 45.2, "cpu_usage": 12.50}')
                elif self.path.startswith("/api/inverter/modbus"):
                    query = parse_qs(urlparse(self.path).query)
                    device = query["device_id"][0]
                    if device == "BROKEN":
                        self.answer(500, "inverter offline", "text/plain")
                    elif device == "SLOW":
                        time.sleep(3)
                        self.answer(200, "{}")
                    elif query["function_code"][0] == "16":
                        self.answer(200, json.dumps({"success": True, "device_id": device, "written": query["values"][0]}))
                    else:
                        self.answer(200, '{"success": true, "data": [42], "device_id": "%s"}' % device)
                else:
                    self.answer(404, "{}")
            def do_POST(self):
                log("POST " + self.path)
                if self.path == "/api/jwt/create":
                    value = token()
                    log("TOKEN " + value)
                    # Both forms the field uses: JSON with "jwt", and the bare token.
                    if issued[0] % 2 == 1:
                        self.answer(200, json.dumps({"jwt": value}))
                    else:
                        self.answer(200, value, "text/plain")
                else:
                    self.answer(404, "{}")
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        print("ready", flush=True)
        server.serve_forever()
        """#

    let port: Int
    let process: ChildProcess
    let logPath: String

    static func start(in folder: TemporaryDirectory) async throws -> TestWebAPI {
        let script = try folder.write("web_api.py", script)
        let port = try await Mosquitto.freePort()
        let ready = folder.file("api.ready")
        let log = folder.file("api.log")
        let process = try ChildProcess.spawn("python3", [script, "\(port)", secret, log], outputPath: ready, errorPath: folder.file("api.err"))
        guard await waitFor("ready", in: { (try? String(contentsOfFile: ready, encoding: .utf8)) ?? "" }) else {
            await process.terminate()
            throw InteropError("the test web API did not start")
        }
        return TestWebAPI(port: port, process: process, logPath: log)
    }

    var log: [String] { ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
    var tokens: [String] { log.filter { $0.hasPrefix("TOKEN ") }.map { String($0.dropFirst(6)) } }

    func stop() async { await process.terminate() }
}

private struct SubscriberToken: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

@Suite("databus gateway end to end", .serialized, .timeLimit(.minutes(5)))
struct GatewayCommandTests {
    func signedToken(subject: String) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: TestWebAPI.secret), digestAlgorithm: .sha256)
        return try await keys.sign(SubscriberToken(sub: SubjectClaim(value: subject), exp: ExpirationClaim(value: Date() + 600)))
    }

    @Test(
        "Modbus reads and writes through a real HTTP API, state every interval, a fresh JWT per reconnect, the fallback state, --check",
        arguments: BrokerKind.allCases
    )
    func endToEnd(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let certificates = try await makeCertificates(in: folder, clients: ["gateway"])
        let secretFile = try folder.write("jwt.secret", TestWebAPI.secret)
        _ = try await runProgram("chmod", ["644", secretFile])
        var configuration = """
            cafile \(certificates)/broker/ca.crt
            certfile \(certificates)/broker/broker.crt
            keyfile \(certificates)/broker/broker.key
            """
        var subscriberLogin: (String, String)?
        if kind == .databus {
            // Only tokens signed by the web API's key get in.
            configuration += "\nallow_anonymous false\njwt_keyfile \(secretFile)\njwt_algorithms HS256\n"
            subscriberLogin = ("test-subscriber", try await signedToken(subject: "test-subscriber"))
        }
        let api = try await TestWebAPI.start(in: folder)
        var apiStopped = false
        defer { if !apiStopped { Task { await api.stop() } } }
        try await kind.with(extraConfiguration: configuration) { broker in
            let subscriber = try await PahoSubscriber.start(
                port: broker.port,
                topic: "iamcat/#",
                in: folder,
                tls: ("\(certificates)/broker/ca.crt", "", ""),
                username: subscriberLogin?.0,
                password: subscriberLogin?.1
            )
            defer { Task { await subscriber.stop() } }
            // The CA on one line with \n escapes, as MQTT_ROOT_CA comes in the field.
            let rootCA = try String(contentsOfFile: "\(certificates)/broker/ca.crt", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "\\n")
            let settings = try folder.write(
                "mqtt.env",
                """
                MQTT_BROKER_HOST=127.0.0.1
                MQTT_BROKER_PORT=\(broker.port)
                WEB_CONTAINER_HOST=127.0.0.1
                WEB_CONTAINER_PORT=\(api.port)
                MQTT_ROOT_CA=\(rootCA)

                """
            )
            let health = folder.file("gateway.health")
            let gatewayLog = folder.file("gateway.err")
            let gateway = try ChildProcess.spawn(
                try DatabusBrokerProcess.executable(),
                ["gateway", "--env-file", settings, "--state-interval", "0.5", "--http-timeout", "1", "--health-file", health],
                errorPath: gatewayLog
            )
            defer { if gateway.isRunning { gateway.signal(SIGKILL) } }
            let log = { (try? String(contentsOfFile: gatewayLog, encoding: .utf8)) ?? "" }
            func messages(on topic: String) -> [JSONValue] { subscriber.received.filter { $0["topic"] == .string("iamcat/\(topic)") } }
            func waitForMessages(on topic: String, count: Int) async -> [JSONValue] {
                let deadline = ContinuousClock.now + .seconds(20)
                while messages(on: topic).count < count && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
                return messages(on: topic)
            }

            // State once connected, with the API's fields as the API wrote them.
            let states = await waitForMessages(on: "state", count: 2)
            try #require(states.count >= 2, "no state published; gateway log: \(log())")
            let state = try #require(states.first?["metadata"])
            #expect(state["type"] == .string("gateway_state"))
            #expect(state["status"] == .string("online"))
            #expect(state["timestamp"]?.stringValue?.count == 27)
            #expect(states.first?["metadata_text"]?.stringValue?.contains(#""memory_usage":45.2,"cpu_usage":12.50}"#) == true)
            let check = try await runProgramCollectingErrors(try DatabusBrokerProcess.executable(), ["gateway", "--check", "--health-file", health])
            #expect(check.status == 0, "\(check.output)")

            // Modbus requests, published as a client of the broker would.
            try await Task.sleep(for: .milliseconds(300))
            let requests = [
                try Fixtures.exampleText("gateway-modbus-read-request.json"),
                try Fixtures.exampleText("gateway-modbus-write-request.json"),
                #"{"function_code": 16, "device_id": "D2", "address": 5, "values": [1, 2.0], "type": "U16", "note": "kept"}"#,
                "read register 5 please",
                #"{"function_code": 3, "device_id": "BROKEN", "address": 1, "size": 1}"#,
                #"{"function_code": 3, "device_id": "SLOW", "address": 1, "size": 1}"#,
            ]
            for request in requests {
                var arguments = [
                    "-h", "127.0.0.1", "-p", "\(broker.port)", "--cafile", "\(certificates)/broker/ca.crt", "-q", "1", "-t", "iamcat/modbus/request",
                    "-m", request,
                ]
                if let subscriberLogin { arguments += ["-u", subscriberLogin.0, "-P", subscriberLogin.1, "-i", "test-publisher"] }
                let published = try await runProgramCollectingErrors("mosquitto_pub", arguments)
                #expect(published.status == 0, "\(published.errorOutput)")
            }
            let responses = await waitForMessages(on: "modbus/response", count: 6).compactMap { $0["metadata"] }
            try #require(responses.count == 6, "gateway log: \(log())")
            func response(device: String) -> JSONValue? { responses.first { $0["request"]?["device_id"] == .string(device) } }
            let read = try #require(response(device: "A2332407312").flatMap { $0["request"]?["function_code"] == .number("3") ? $0 : nil })
            #expect(read["type"] == .string("modbus_response"))
            #expect(read["request"] == (try JSONValue.parse(Fixtures.exampleText("gateway-modbus-read-request.json"))))
            #expect(read["response"] == (try JSONValue.parse(#"{"success": true, "data": [42], "device_id": "A2332407312"}"#)))
            let list = try #require(response(device: "D2"))
            #expect(list["response"]?["written"] == .string("1,2.0"))
            #expect(list["request"]?["note"] == .string("kept"))
            let invalid = try #require(responses.first { $0["request"] == .string("read register 5 please") })
            #expect(invalid["response"]?["success"] == .bool(false))
            let broken = try #require(response(device: "BROKEN"))
            #expect(broken["response"]?["success"] == .bool(false))
            #expect(broken["response"]?["error"]?.stringValue?.contains("HTTP 500") == true)
            let slow = try #require(response(device: "SLOW"))
            #expect(slow["response"]?["error"]?.stringValue?.contains("timed out") == true)
            // The web API got the documented queries, values as they came.
            #expect(
                api.log.contains(
                    "GET /api/inverter/modbus?device_id=A2332407312&function_code=3&address=10056&size=1&type=U16&endianess=big&scale_factor=1"
                )
            )
            #expect(api.log.contains("GET /api/inverter/modbus?device_id=A2332407312&address=33207&function_code=16&values=170&type=U16"))
            #expect(api.log.contains("GET /api/inverter/modbus?device_id=D2&address=5&function_code=16&values=1,2.0&type=U16"))

            // A broker restart: the gateway logs in again with a token it has never used.
            let tokensBefore = api.tokens.count
            await broker.kill()
            try await broker.restart()
            let deadline = ContinuousClock.now + .seconds(20)
            while api.tokens.count <= tokensBefore && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(api.tokens.count > tokensBefore, "no new token after the restart")
            #expect(Set(api.tokens).count == api.tokens.count, "a token was fetched twice")
            // The subscriber reconnects by itself only on paho's schedule: check the gateway's own log instead.
            #expect(await waitFor("again", in: { log().components(separatedBy: "] connected").count > 2 ? "again" : "" }), "\(log())")

            // The web API goes away: the fallback state.
            await api.stop()
            apiStopped = true
            let fresh = try await PahoSubscriber.start(
                port: broker.port,
                topic: "iamcat/state",
                in: folder,
                name: "state",
                tls: ("\(certificates)/broker/ca.crt", "", ""),
                username: subscriberLogin?.0,
                password: subscriberLogin?.1
            )
            defer { Task { await fresh.stop() } }
            let deadlineFallback = ContinuousClock.now + .seconds(20)
            var fallback: JSONValue?
            while fallback == nil && ContinuousClock.now < deadlineFallback {
                fallback = fresh.received.compactMap { $0["metadata"] }.first { $0["status"] == .string("api_unavailable") }
                try await Task.sleep(for: .milliseconds(50))
            }
            let unavailable = try #require(fallback, "no fallback state; gateway log: \(log())")
            #expect(unavailable["type"] == .string("gateway_state"))
            #expect(unavailable["version"] == .string("0.1.0"))
            #expect(unavailable["uptime"]?.doubleValue ?? 0 > 0)
            #expect(unavailable["error"]?.stringValue?.hasPrefix("Failed to fetch state from web container") == true)

            gateway.signal(SIGTERM)
            #expect(await gateway.wait(timeout: .seconds(10)) == 0)
        }
    }

    @Test("--check fails without a recent state publish; bad settings get a clear error")
    func checkAndBadSettings() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let databus = try DatabusBrokerProcess.executable()
        let missing = try await runProgramCollectingErrors(databus, ["gateway", "--check", "--health-file", folder.file("none")])
        #expect(missing.status == 1)
        #expect(missing.output.contains("unhealthy"))
        let old = try folder.write("old.health", String(Date().timeIntervalSince1970 - 20))
        #expect(try await runProgramCollectingErrors(databus, ["gateway", "--check", "--health-file", old]).status == 1)
        let settings = try folder.write("mqtt.env", "MQTT_BROKER_PORT=eighty\n")
        let bad = try await runProgramCollectingErrors(databus, ["gateway", "--env-file", settings])
        #expect(bad.status == 64)
        #expect(bad.errorOutput.contains("MQTT_BROKER_PORT"))
        let badCA = try folder.write("ca.env", "MQTT_ROOT_CA=not a certificate\n")
        let refused = try await runProgramCollectingErrors(databus, ["gateway", "--env-file", badCA])
        #expect(refused.status == 64)
        #expect(refused.errorOutput.contains("MQTT_ROOT_CA"))
    }
}

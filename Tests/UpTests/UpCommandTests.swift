import AsyncHTTPClient
import DatabusTestSupport
import Foundation
import LPRModel
import NIOCore
import NIOHTTP1
import Testing

@Suite("databus up", .serialized, .timeLimit(.minutes(5)))
struct UpCommandTests {
    @Test(
        "first start: makes the data folder, prints the dashboard, the token once, a sub and a pub line; the pub line's detection shows in the API; /metrics has the broker's and the server's; SIGTERM stops it"
    )
    func firstStart() async throws {
        try await withUp { up in
            // The data folder.
            for file in [
                "mosquitto.conf", "passwd", "acl", "api-token", "api-token-read-only", "lpr.sqlite", "certs/ca/ca.crt", "certs/broker/broker.key",
                "certs/CAM001/CAM001.crt", "certs/lprserver/lprserver.key",
            ] {
                #expect(FileManager.default.fileExists(atPath: up.data + "/" + file), "\(file)")
            }
            let attributes = try FileManager.default.attributesOfItem(atPath: up.data + "/api-token")
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            #expect(up.adminToken.hasPrefix("dbadm_"))
            #expect(up.output.contains(up.adminToken), "the admin token is printed at first start")

            // Ready means ready: the token was written and the subscriptions made before the port opened.
            let lines = up.log.split(separator: "\n")
            let upReady = lines.indices.filter { lines[$0].contains("databus.up") && lines[$0].hasSuffix(" ready") }
            #expect(upReady.count == 1, "one ready line")
            let serverReady = try #require(lines.firstIndex { $0.contains("LPR server ready") })
            #expect(serverReady < (upReady.first ?? 0), "the server was ready (subscriptions acknowledged) before the port opened")

            // The printed pub line, run as printed (with this build's databus), stores a detection.
            let pubLine = try #require(up.output.split(separator: "\n").first { $0.contains(" pub ") }).trimmingCharacters(in: .whitespaces)
            let executable = try DatabusBrokerProcess.executable()
            let command =
                pubLine.hasPrefix("swift run databus ")
                ? executable + pubLine.dropFirst("swift run databus".count) : executable + pubLine.dropFirst("databus".count)
            let published = try await runProgramCollectingErrors("/bin/sh", ["-c", command])
            #expect(published.status == 0, "\(published.errorOutput)")
            #expect(up.output.contains(" sub -h 127.0.0.1 -p \(up.mqttPort) -t 'lprserver/#' -v"))
            let stored = try await poll("the printed detection in the API") {
                let body = try await get(up, "/api/detections?plate=ABC1234", token: up.adminToken)
                return body.status == .ok && (body.json["items"]?.arrayValue?.count ?? 0) == 1 ? body : nil
            }
            #expect(stored.json["items"]?.arrayValue?.first?["camera_id"] == "CAM001")

            let metrics = try await get(up, "/metrics", token: nil)
            #expect(metrics.status == .ok)
            #expect(metrics.text.contains("databus_connections"), "the broker's metrics")
            #expect(metrics.text.contains("lpr_detections_total"), "the server's metrics")
            #expect(metrics.text.contains("mqtt_messages_received"), "the server's metrics")
            let health = try await get(up, "/health", token: nil)
            #expect(health.json["connection_status"] == "connected")
            let page = try await get(up, "/", token: nil)
            #expect(page.text.contains("<title>Databus LPR</title>"))
            #expect(try await get(up, "/api/cameras", token: nil).status == .unauthorized)
            #expect(try await get(up, "/api/cameras", token: up.readOnlyToken).status == .ok)

            // SIGTERM with a live feed open: it still stops, gracefully.
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(up.httpPort)/api/events")
            request.headers.add(name: "Authorization", value: "Bearer \(up.adminToken)")
            let events = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            #expect(events.status == .ok)
            let reader = Task { for try await _ in events.body {} }
            defer { reader.cancel() }
            let started = ContinuousClock.now
            let status = await up.stop()
            #expect(status == 0, "exit status \(status): \(up.log.suffix(1000))")
            #expect(ContinuousClock.now - started < .seconds(15))
        }
    }

    @Test("a second start reuses the folder: same token, not printed again, the same CA; the stored detections are still there")
    func secondStart() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let data = directory.file("data")
        let first = try await UpProcess.start(data: data)
        let token = first.adminToken
        let ca = try String(contentsOfFile: data + "/certs/ca/ca.crt", encoding: .utf8)
        let conf = try String(contentsOfFile: data + "/mosquitto.conf", encoding: .utf8)
        let payload = JSONValue.object(try sample(id: "kept-1")).jsonText
        let published = try await runProgramCollectingErrors(
            "mosquitto_pub",
            ["-h", "127.0.0.1", "-p", "\(first.mqttPort)", "-q", "1", "-t", "lprserver/cameras/CAM001/detection", "-m", payload]
        )
        #expect(published.status == 0)
        _ = try await poll("the detection") { try await get(first, "/api/detections/kept-1", token: token).status == .ok ? true : nil }
        #expect(await first.stop() == 0)
        first.remove()

        let second = try await UpProcess.start(data: data)
        defer { second.remove() }
        #expect(second.adminToken == token)
        #expect(!second.output.contains(token), "the token is printed at first start only")
        #expect(second.output.contains(data + "/api-token"))
        #expect(try String(contentsOfFile: data + "/certs/ca/ca.crt", encoding: .utf8) == ca)
        #expect(try String(contentsOfFile: data + "/mosquitto.conf", encoding: .utf8) == conf)
        #expect(try await get(second, "/api/detections/kept-1", token: token).status == .ok)
        #expect(await second.stop() == 0)
    }

    @Test("anonymous MQTT on a listener that is not loopback is refused with what to add")
    func anonymousOffLoopbackRefused() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let executable = try DatabusBrokerProcess.executable()
        let result = try await runProgramCollectingErrors(
            executable,
            ["up", "--data", directory.file("data"), "--mqtt", "0.0.0.0:0", "--http", "127.0.0.1:0"]
        )
        #expect(result.status != 0)
        #expect(result.errorOutput.contains("not a loopback address"), "\(result.errorOutput)")
        #expect(result.errorOutput.contains("--mqtts"))
        #expect(result.errorOutput.contains("allow_anonymous false"))
        #expect(result.errorOutput.contains("databus passwd"))
    }

    @Test("--mqtts: a camera with its certificate from the data folder publishes over mutual TLS; a client without one is refused")
    func mutualTLS() async throws {
        let port = try await Mosquitto.freePort()
        try await withUp(arguments: ["--mqtts", "127.0.0.1:\(port)"]) { up in
            #expect(up.output.contains("mqtts://127.0.0.1:\(port)"))
            let certs = up.data + "/certs/CAM001/"
            let payload = JSONValue.object(try sample(id: "tls-1")).jsonText
            let published = try await runProgramCollectingErrors(
                "mosquitto_pub",
                [
                    "-h", "localhost", "-p", "\(port)", "--cafile", certs + "ca.crt", "--cert", certs + "CAM001.crt", "--key", certs + "CAM001.key",
                    "-q", "1", "-t", "lprserver/cameras/CAM001/detection", "-m", payload,
                ]
            )
            #expect(published.status == 0, "\(published.errorOutput)")
            _ = try await poll("the detection sent over mTLS") {
                try await get(up, "/api/detections/tls-1", token: up.adminToken).status == .ok ? true : nil
            }
            let refused = try await runProgramCollectingErrors(
                "mosquitto_pub",
                ["-h", "localhost", "-p", "\(port)", "--cafile", certs + "ca.crt", "-q", "1", "-t", "lprserver/cameras/CAM001/detection", "-m", "{}"]
            )
            #expect(refused.status != 0)
        }
    }
}

// MARK: Helpers

struct HTTPAnswer {
    let status: HTTPResponseStatus
    let text: String
    var json: JSONObject { (try? JSONObject.parse(Array(text.utf8))) ?? [:] }
}

func get(_ up: UpProcess, _ path: String, token: String?) async throws -> HTTPAnswer {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(up.httpPort)\(path)")
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    let body = try await response.body.collect(upTo: 16 << 20)
    return HTTPAnswer(status: response.status, text: String(buffer: body))
}

func poll<T>(_ what: String, timeout: Duration = .seconds(15), _ attempt: () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while true {
        if let value = try await attempt() { return value }
        guard ContinuousClock.now < deadline else { throw InteropError("\(what): not within \(timeout)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// The seed's detection with this id.
func sample(id: String, camera: String = "CAM001", plate: String = "ABC1234") throws -> JSONObject {
    var json = try JSONObject.parse(Fixtures.example("lpr-detection.json"))
    json["message_id"] = .string(id)
    json["camera_id"] = .string(camera)
    json["timestamp"] = .timestamp(Date())
    if var data = json["detection_data"]?.objectValue, var plates = data["plates"]?.arrayValue, var first = plates.first?.objectValue {
        first["plate_number"] = .string(plate)
        plates[0] = .object(first)
        data["plates"] = .array(plates)
        json["detection_data"] = .object(data)
    }
    return json
}

import AsyncHTTPClient
import DatabusTestSupport
import Foundation
import HummingbirdTesting
import LPRModel
import LPRServer
import NIOConcurrencyHelpers
import NIOCore
import Testing

@Suite("Live feed (Server-Sent Events)", .serialized, .timeLimit(.minutes(2)))
struct EventStreamTests {
    @Test(
        "a detection published with mosquitto_pub reaches /api/events, its watch-list hit and alert with it",
        arguments: TestBrokerKind.allCases
    )
    func detectionReachesTheFeed(kind: TestBrokerKind) async throws {
        try await withAPI(.live, kind: kind) { harness, client in
            let port = try #require(client.port)
            _ = try await harness.server.saveWatchlistEntry(WatchlistEntry(id: "w1", plate: "KX19ABC", reason: "stolen"))
            let stream = try await EventStreamReader.open(port: port, token: TestTokens.readOnly)
            defer { stream.close() }
            try await stream.waitFor("the stream to open") { $0.contains(": connected") }

            let payload = JSONValue.object(try seedDetection(id: "sse-1", plate: "KX19ABC")).jsonText
            let published = ContinuousClock.now
            let result = try await runProgramCollectingErrors(
                "mosquitto_pub",
                ["-h", "127.0.0.1", "-p", "\(harness.broker.port)", "-q", "1", "-t", "lprserver/cameras/CAM001/detection", "-m", payload]
            )
            #expect(result.status == 0, "\(result.errorOutput)")
            let event = try await stream.waitFor("the detection event") { $0.contains("\"message_id\":\"sse-1\"") }
            // A figure, not a check: a loaded machine may take longer to start mosquitto_pub.
            print("live feed: the detection reached /api/events \(ContinuousClock.now - published) after mosquitto_pub started (\(kind))")
            let events = ServerSentEvents.parse(event)
            let detection = try #require(events.first { $0.name == "detection" })
            #expect(detection.data["watchlist_hit"] == true)
            #expect(detection.data["detection"]?["message_id"] == "sse-1")
            #expect(detection.data["detection"]?["received_at"]?.stringValue != nil)
            let all = try await stream.waitFor("the alert event") { $0.contains("event: alert") }
            let alert = try #require(ServerSentEvents.parse(all).first { $0.name == "alert" })
            #expect(alert.data["kind"] == "watchlist_hit")
            let heartbeat = try await stream.waitFor("a heartbeat") { $0.contains(": keep-alive") }
            #expect(!heartbeat.isEmpty)
        }
    }

    @Test("camera status changes and command outcomes are events too; no token is 401")
    func cameraAndCommandEvents() async throws {
        try await withAPI(.live) { harness, client in
            let port = try #require(client.port)
            let refused = try await client.call(.get, "/api/events", token: nil)
            expectError(refused, .unauthorized, field: "Authorization")
            let stream = try await EventStreamReader.open(port: port, token: TestTokens.admin)
            defer { stream.close() }
            try await stream.waitFor("the stream to open") { $0.contains(": connected") }
            try await withClient(.test(harness.broker, id: "CAM007")) { camera in
                try await camera.publish(topic: "lprserver/cameras/CAM007/status", payload: "online", qos: .atLeastOnce)
                try await stream.waitFor("the camera event") { $0.contains("\"camera_id\":\"CAM007\"") && $0.contains("event: camera") }
                _ = try await harness.server.sendCommand(camera: "CAM007", command: "restart", timeout: .milliseconds(300))
                try await stream.waitFor("the command event") { $0.contains("event: command") && $0.contains("\"status\":\"timeout\"") }
            }
        }
    }
}

/// Server-Sent Events parsed from the text of a stream.
enum ServerSentEvents {
    static func parse(_ text: String) -> [(name: String, data: JSONObject)] {
        text.components(separatedBy: "\n\n").compactMap { block in
            var name = "message"
            var data = ""
            for line in block.split(separator: "\n") {
                if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
                if line.hasPrefix("data: ") { data += line.dropFirst(6) }
            }
            guard !data.isEmpty, let object = try? JSONObject.parse(Array(data.utf8)) else { return nil }
            return (name, object)
        }
    }
}

/// Reads `/api/events` over real HTTP with AsyncHTTPClient, keeping what came as text.
final class EventStreamReader: Sendable {
    private let received = NIOLockedValueBox("")
    private let task: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

    static func open(port: Int, token: String) async throws -> EventStreamReader {
        let reader = EventStreamReader()
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/events")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        guard response.status == .ok else { throw InteropError("GET /api/events: \(response.status)") }
        guard response.headers.first(name: "Content-Type") == "text/event-stream" else {
            throw InteropError("GET /api/events: Content-Type \(response.headers.first(name: "Content-Type") ?? "none")")
        }
        let received = reader.received
        reader.task.withLockedValue {
            $0 = Task {
                do {
                    for try await buffer in response.body { received.withLockedValue { $0 += String(buffer: buffer) } }
                } catch {}
            }
        }
        return reader
    }

    /// Waits until the text received satisfies `condition`, and returns it.
    @discardableResult
    func waitFor(_ what: String, timeout: Duration = .seconds(10), _ condition: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            let text = received.withLockedValue { $0 }
            if condition(text) { return text }
            guard ContinuousClock.now < deadline else { throw InteropError("\(what): not within \(timeout); received: \(text.suffix(600))") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func close() { task.withLockedValue { $0?.cancel() } }
}

import DatabusTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("REST API", .serialized, .timeLimit(.minutes(3)))
struct RESTAPITests {
    @Test(
        "no token is 401, an unknown one 401, a read-only token reads but a write is 403; /health, /metrics and the OpenAPI document are public",
        arguments: HTTPFramework.allCases
    )
    func authentication(framework: HTTPFramework) async throws {
        try await withAPI(framework) { _, client in
            let missing = try await client.call(.get, "/api/detections", token: nil)
            expectError(missing, .unauthorized, field: "Authorization")
            #expect(missing.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            expectError(try await client.call(.get, "/api/detections", token: "dbadm_wrong"), .unauthorized, field: "Authorization")
            expectError(
                try await client.call(.get, "/api/cameras", token: String(TestTokens.admin.dropLast())),
                .unauthorized,
                field: "Authorization"
            )
            var basic: HTTPFields = [:]
            basic[.authorization] = "Basic YWRtaW46YWRtaW4="
            expectError(try await client.execute(uri: "/api/alerts", method: .get, headers: basic), .unauthorized, field: "Authorization")

            #expect(try await client.call(.get, "/api/watchlist", token: TestTokens.readOnly).status == .ok)
            let write = try await client.call(.post, "/api/watchlist", token: TestTokens.readOnly, json: ["plate": "AB123CD"])
            expectError(write, .forbidden, field: "Authorization")
            expectError(try await client.call(.delete, "/api/watchlist/x", token: TestTokens.readOnly), .forbidden, field: "Authorization")
            #expect(try await client.call(.post, "/api/watchlist", token: TestTokens.admin, json: ["plate": "AB123CD"]).status == .created)

            let health = try await client.call(.get, "/health", token: nil)
            #expect(health.status == .ok)
            #expect(health.object["status"] == "healthy")
            #expect(health.object["connection_status"] == "connected")
            let metrics = try await client.call(.get, "/metrics", token: nil)
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            #expect(metrics.text.contains("test_metric 1"))
            let document = try await client.call(.get, "/api/openapi.json", token: nil)
            #expect(document.status == .ok)
            #expect(document.object["openapi"] == "3.1.0")

            let unknown = try await client.call(.get, "/api/nothing-here")
            expectError(unknown, .notFound, field: nil)
            let wrongMethod = try await client.call(.delete, "/api/cameras/CAM001")
            expectError(wrongMethod, .methodNotAllowed, field: nil)
            #expect(wrongMethod.headers[.allow] == "GET")
            #expect(try await client.call(.patch, "/api/watchlist").headers[.allow] == "GET, POST")
        }
    }

    @Test(
        "detections: newest first, paged by cursor, exact, prefix and fuzzy plate search, filters, one by id; bad parameters name the field",
        arguments: HTTPFramework.allCases
    )
    func detections(framework: HTTPFramework) async throws {
        try await withAPI(framework) { harness, client in
            let start = Date().addingTimeInterval(-600)
            try await storeDetections(
                harness.repository,
                [
                    ("d1", "CAM001", "ABC1234"), ("d2", "CAM002", "ABC1235"), ("d3", "CAM001", "XYZ999"), ("d4", "CAM001", "A8C1234"),
                    ("d5", "CAM002", "QQ1"),
                ],
                start: start
            )
            let all = try await client.call(.get, "/api/detections")
            #expect(all.status == .ok)
            let ids = all.object["items"]?.arrayValue?.compactMap { $0["message_id"]?.stringValue }
            #expect(ids == ["d5", "d4", "d3", "d2", "d1"])
            #expect(all.object["next_cursor"] == .null)
            let first = try #require(all.object["items"]?.arrayValue?.first?.objectValue)
            #expect(first["received_at"]?.stringValue != nil)
            #expect(first["detection_data"]?["plates"]?.arrayValue?.first?["province"] == "Bangkok", "the detection as received")

            // Paging: two at a time, the cursor leads on.
            var seen: [String] = []
            var uri = "/api/detections?limit=2"
            for _ in 0..<5 {
                let page = try await client.call(.get, uri)
                #expect(page.status == .ok)
                seen += page.object["items"]?.arrayValue?.compactMap { $0["message_id"]?.stringValue } ?? []
                guard let cursor = page.object["next_cursor"]?.stringValue else { break }
                uri = "/api/detections?limit=2&cursor=\(cursor)"
            }
            #expect(seen == ["d5", "d4", "d3", "d2", "d1"])

            func plates(_ query: String) async throws -> [String] {
                let response = try await client.call(.get, "/api/detections?\(query)")
                #expect(response.status == .ok, "\(response.text)")
                return response.object["items"]?.arrayValue?.compactMap { $0["message_id"]?.stringValue } ?? []
            }
            #expect(try await plates("plate=abc-1234") == ["d1"])
            #expect(try await plates("plate=ABC123*") == ["d2", "d1"])
            #expect(try await plates("plate=ABC1234&fuzzy=true") == ["d4", "d2", "d1"], "one edit, and 8 read for B")
            #expect(try await plates("camera=CAM002") == ["d5", "d2"])
            #expect(try await plates("checkpoint=CP-CAM001&plate=XYZ999") == ["d3"])
            let since = RFC3339.string(from: start.addingTimeInterval(2.5))
            #expect(try await plates("since=\(since)") == ["d5", "d4"])
            #expect(try await plates("until=\(since)") == ["d3", "d2", "d1"])

            let one = try await client.call(.get, "/api/detections/d3")
            #expect(one.status == .ok)
            #expect(one.object["message_id"] == "d3")
            #expect(one.object["camera_id"] == "CAM001")
            expectError(try await client.call(.get, "/api/detections/nope"), .notFound, field: "message_id")

            expectError(try await client.call(.get, "/api/detections?limit=0"), .badRequest, field: "limit")
            expectError(try await client.call(.get, "/api/detections?limit=1001"), .badRequest, field: "limit")
            expectError(try await client.call(.get, "/api/detections?limit=ten"), .badRequest, field: "limit")
            expectError(try await client.call(.get, "/api/detections?since=yesterday"), .badRequest, field: "since")
            expectError(try await client.call(.get, "/api/detections?until=2026-13-01T00:00:00Z"), .badRequest, field: "until")
            #expect(try await plates("since=\(since)&until=\(since)") == [], "an empty range")
            #expect(try await plates("plate=--") == [], "no letter or digit matches nothing")
            #expect(try await plates("fuzzy=true").count == 5, "fuzzy without a plate refines nothing")
            expectError(try await client.call(.get, "/api/detections?limit="), .badRequest, field: "limit")
            expectError(try await client.call(.get, "/api/detections?since="), .badRequest, field: "since")
            expectError(try await client.call(.get, "/api/detections?cursor=abc"), .badRequest, field: "cursor")
            expectError(try await client.call(.get, "/api/detections?cursor="), .badRequest, field: "cursor")
            expectError(try await client.call(.get, "/api/detections?fuzzy=maybe&plate=AB1"), .badRequest, field: "fuzzy")
        }
    }

    @Test(
        "cameras: known once a message came, 404 before; desired and reported configuration; health request reaches the camera; bad configuration names the field",
        arguments: HTTPFramework.allCases
    )
    func cameras(framework: HTTPFramework) async throws {
        try await withAPI(framework) { harness, client in
            expectError(try await client.call(.get, "/api/cameras/CAM001"), .notFound, field: "id")
            expectError(try await client.call(.post, "/api/cameras/CAM001/health/request"), .notFound, field: "id")
            #expect(try await client.call(.get, "/api/cameras").object["items"] == [])

            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let inbox = try await Inbox.subscribe(camera, to: "lprserver/cameras/CAM001/#", qos: .exactlyOnce)
                var health = try JSONObject.parse(Fixtures.example("lpr-health.json"))
                health["timestamp"] = .timestamp(Date())
                try await camera.publish(json: health, to: "lprserver/cameras/CAM001/health", qos: .atLeastOnce)
                try await camera.publish(json: try seedDetection(id: "cam-d1"), to: "lprserver/cameras/CAM001/detection")
                try await waitFor("the detection to be stored") { try await harness.repository.camera("CAM001")?.lastDetectionID == "cam-d1" }

                let shown = try await client.call(.get, "/api/cameras/CAM001")
                #expect(shown.status == .ok, "\(shown.text)")
                let body = shown.object
                #expect(body["camera_id"] == "CAM001")
                #expect(body["checkpoint_id"] == "CP001")
                #expect(body["online"] == true)
                #expect(body["last_seen"]?.stringValue != nil)
                #expect(body["health"]?["health_details"]?["temperature"] == .number("42.5"))
                #expect(body["last_detection"]?["message_id"] == "cam-d1")
                #expect(body["config"]?["desired"] == .null)
                let list = try await client.call(.get, "/api/cameras")
                #expect(list.object["items"]?.arrayValue?.map { $0["camera_id"] } == ["CAM001"])

                let config: JSONObject = [
                    "config_type": "detection_settings", "config_data": ["confidence_threshold": 0.8, "detection_interval": 500],
                ]
                let accepted = try await client.call(.put, "/api/cameras/CAM001/config", json: config)
                #expect(accepted.status == .accepted, "\(accepted.text)")
                let messageID = try #require(accepted.object["message_id"]?.stringValue)
                let update = try await inbox.first("config/update") { $0.topic == "lprserver/cameras/CAM001/config/update" }
                #expect(update.object["message_id"] == .string(messageID))
                #expect(update.object["config_data"]?["confidence_threshold"] == .number("0.8"))
                var applied = update.object
                applied["message_id"] = "applied-1"
                try await camera.publish(json: applied, to: "lprserver/cameras/CAM001/config", qos: .exactlyOnce, retain: true)
                try await waitFor("the report") { try await harness.repository.camera("CAM001")?.reportedConfig != nil }
                let configs = try await client.call(.get, "/api/cameras/CAM001").object["config"]
                #expect(configs?["desired"]?["message_id"] == .string(messageID))
                #expect(configs?["reported"]?["message_id"] == "applied-1")

                let asked = try await client.call(.post, "/api/cameras/CAM001/health/request")
                #expect(asked.status == .accepted)
                try await inbox.first("health/request") { $0.topic == "lprserver/cameras/CAM001/health/request" }
            }

            // A configuration for a camera never heard of makes it known (set up before it connects).
            #expect(try await client.call(.put, "/api/cameras/CAM009/config", json: ["config_type": "t", "config_data": [:]]).status == .accepted)
            #expect(try await client.call(.get, "/api/cameras/CAM009").status == .ok)

            let bad = try await client.call(
                .put,
                "/api/cameras/CAM001/config",
                json: ["config_type": "t", "config_data": ["confidence_threshold": 3]]
            )
            expectError(bad, .badRequest, field: "config_data.confidence_threshold")
            expectError(try await client.call(.put, "/api/cameras/CAM001/config", json: ["config_data": [:]]), .badRequest, field: "config_type")
            expectError(
                try await client.call(.put, "/api/cameras/CAM001/config", json: ["config_type": "t", "config_data": [1]]),
                .badRequest,
                field: "config_data"
            )
            expectError(try await client.call(.put, "/api/cameras/CAM001/config", raw: "{\"config_type\": "), .badRequest, field: "body")
            expectError(try await client.call(.put, "/api/cameras/CAM001/config", raw: "[1, 2]"), .badRequest, field: "body")
            expectError(try await client.call(.put, "/api/cameras/CAM001/config"), .badRequest, field: "body")
            expectError(
                try await client.call(.put, "/api/cameras/CAM%2B1/config", json: ["config_type": "t", "config_data": [:]]),
                .badRequest,
                field: "id"
            )
        }
    }

    @Test(
        "control: the camera's answer as it sent it (200, even when its status is error), 504 with the message_id on timeout, 404 for an unknown camera, 400 naming the field",
        arguments: HTTPFramework.allCases
    )
    func control(framework: HTTPFramework) async throws {
        try await withAPI(framework) { harness, client in
            expectError(try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": "restart"]), .notFound, field: "id")
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                try await camera.publish(topic: "lprserver/cameras/CAM001/status", payload: "online", qos: .atLeastOnce, retain: true)
                try await waitFor("the camera to be known") { try await harness.repository.camera("CAM001")?.isKnown == true }
                let commands = try await camera.subscribe(to: "lprserver/cameras/CAM001/control", qos: .exactlyOnce)
                let answering = Task {
                    for await message in commands {
                        let command = message.object
                        guard command["command"] != "ignore" else { continue }
                        let status: JSONValue = command["command"] == "restart" ? "ok" : "error"
                        try await camera.publish(
                            json: [
                                "message_id": command["message_id"] ?? .null, "status": status, "result": ["note": "from the test camera"],
                                "extra_field": 7,
                            ],
                            to: "lprserver/cameras/CAM001/control/response",
                            qos: .exactlyOnce
                        )
                    }
                }
                defer { answering.cancel() }
                let ok = try await client.call(
                    .post,
                    "/api/cameras/CAM001/control",
                    json: ["command": "restart", "parameters": ["delay_seconds": 5], "priority": "high", "timeout_seconds": 5]
                )
                #expect(ok.status == .ok, "\(ok.text)")
                #expect(ok.object["status"] == "ok")
                #expect(ok.object["result"]?["note"] == "from the test camera")
                #expect(ok.object["extra_field"] == 7, "the answer as the camera sent it")
                let failed = try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": "self_destruct"])
                #expect(failed.status == .ok)
                #expect(failed.object["status"] == "error")
                let timedOut = try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": "ignore", "timeout_seconds": 0.5])
                #expect(timedOut.status == .gatewayTimeout)
                #expect(timedOut.object["error"] == "timeout")
                let messageID = try #require(timedOut.object["message_id"]?.stringValue)
                #expect(try await harness.repository.command(messageID: messageID)?.status == "timeout")
            }
            expectError(try await client.call(.post, "/api/cameras/CAM001/control", json: [:]), .badRequest, field: "command")
            expectError(try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": 5]), .badRequest, field: "command")
            expectError(
                try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": "x", "priority": "urgent"]),
                .badRequest,
                field: "priority"
            )
            expectError(
                try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": "x", "timeout_seconds": 121]),
                .badRequest,
                field: "timeout_seconds"
            )
            expectError(
                try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": "x", "timeout_seconds": 0]),
                .badRequest,
                field: "timeout_seconds"
            )
            expectError(
                try await client.call(.post, "/api/cameras/CAM001/control", json: ["command": "x", "parameters": "p"]),
                .badRequest,
                field: "parameters"
            )
        }
    }

    @Test(
        "watch-list: POST 201, PUT replaces (200) or adds (201), DELETE 204 then 404; a change is in force for the next detection and published on blacklist/updates",
        arguments: HTTPFramework.allCases
    )
    func watchlist(framework: HTTPFramework) async throws {
        try await withAPI(framework) { harness, client in
            try await withClient(.test(harness.broker, id: "watcher")) { watcher in
                let updates = try await Inbox.subscribe(watcher, to: "lprserver/blacklist/updates")
                let alerts = try await Inbox.subscribe(watcher, to: "lprserver/system/alerts")
                let created = try await client.call(.post, "/api/watchlist", json: ["plate": "KX19ABC", "reason": "stolen", "level": "warning"])
                #expect(created.status == .created, "\(created.text)")
                let id = try #require(created.object["id"]?.stringValue)
                #expect(created.object["plate"] == "KX19ABC")
                #expect(created.object["level"] == "warning")
                #expect(created.object["camera_ids"] == [])
                try await updates.first("the new version on blacklist/updates") { message in
                    message.object["entries"]?.arrayValue?.contains { $0["id"] == .string(id) } == true
                }
                // In force for the very next detection.
                try await watcher.publish(json: try seedDetection(id: "hit-1", plate: "KX19ABC"), to: "lprserver/cameras/CAM001/detection")
                try await alerts.first("the watch-list alert") { $0.object["kind"] == "watchlist_hit" }

                let list = try await client.call(.get, "/api/watchlist")
                #expect(list.object["items"]?.arrayValue?.count == 1)
                let version = try #require(list.object["version"]?.intValue)
                #expect(version >= 1)

                let replaced = try await client.call(.put, "/api/watchlist/\(id)", json: ["plate": "KX19ABD", "level": "critical"])
                #expect(replaced.status == .ok)
                #expect(replaced.object["plate"] == "KX19ABD")
                let added = try await client.call(.put, "/api/watchlist/mine-1", json: ["plate": "ZZ99ZZ", "expires_at": "2030-01-01T00:00:00Z"])
                #expect(added.status == .created)
                #expect(added.object["id"] == "mine-1")
                #expect(added.object["expires_at"]?.stringValue.flatMap(RFC3339.date(from:)) == RFC3339.date(from: "2030-01-01T00:00:00Z"))
                expectError(try await client.call(.post, "/api/watchlist", json: ["id": "mine-1", "plate": "Q1"]), .conflict, field: "id")
                let renamed = try await client.call(.put, "/api/watchlist/mine-1", json: ["id": "other", "plate": "ZZ99ZY"])
                #expect(renamed.status == .ok)
                #expect(renamed.object["id"] == "mine-1", "the path names the entry")

                #expect(try await client.call(.delete, "/api/watchlist/mine-1").status == .noContent)
                expectError(try await client.call(.delete, "/api/watchlist/mine-1"), .notFound, field: "entry_id")
                #expect(try await client.call(.get, "/api/watchlist").object["items"]?.arrayValue?.count == 1)
            }
            expectError(try await client.call(.post, "/api/watchlist", json: ["reason": "x"]), .badRequest, field: "plate")
            expectError(try await client.call(.post, "/api/watchlist", json: ["plate": "--"]), .badRequest, field: "plate")
            expectError(try await client.call(.post, "/api/watchlist", json: ["plate": "A1", "level": "severe"]), .badRequest, field: "level")
            expectError(
                try await client.call(.post, "/api/watchlist", json: ["plate": "A1", "camera_ids": [1]]),
                .badRequest,
                field: "camera_ids[0]"
            )
            expectError(
                try await client.call(.post, "/api/watchlist", json: ["plate": "A1", "expires_at": "soon"]),
                .badRequest,
                field: "expires_at"
            )
            expectError(try await client.call(.post, "/api/watchlist", raw: "not json"), .badRequest, field: "body")
        }
    }

    @Test(
        "alerts by level and time, checkpoints with their cameras and figures, detections per hour per camera; bad parameters name the field",
        arguments: HTTPFramework.allCases
    )
    func reports(framework: HTTPFramework) async throws {
        try await withAPI(framework) { harness, client in
            #expect(try await client.call(.post, "/api/watchlist", json: ["plate": "ABC1234", "level": "critical"]).status == .created)
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                try await camera.publish(json: try seedDetection(id: "r1", plate: "ABC1234"), to: "lprserver/cameras/CAM001/detection")
                try await camera.publish(
                    json: try seedDetection(id: "r2", camera: "CAM002", checkpoint: "CP002", plate: "OTHER1"),
                    to: "lprserver/cameras/CAM002/detection"
                )
                try await camera.publish(topic: "lprserver/cameras/CAM001/status", payload: "bogus", qos: .atLeastOnce)
            }
            try await waitFor("two detections and two alerts") {
                let count = try await harness.repository.detectionCount()
                let alerts = try await harness.repository.alerts(since: nil, level: nil, limit: 10)
                return count == 2 && alerts.count >= 2
            }
            let all = try await client.call(.get, "/api/alerts")
            #expect(all.status == .ok)
            let kinds = Set(all.object["items"]?.arrayValue?.compactMap { $0["kind"]?.stringValue } ?? [])
            #expect(kinds.isSuperset(of: ["watchlist_hit", "message_rejected"]))
            let critical = try await client.call(.get, "/api/alerts?level=critical")
            #expect(critical.object["items"]?.arrayValue?.allSatisfy { $0["level"] == "critical" } == true)
            #expect(critical.object["items"]?.arrayValue?.isEmpty == false)
            let future = RFC3339.string(from: Date().addingTimeInterval(60))
            #expect(try await client.call(.get, "/api/alerts?since=\(future)").object["items"] == [])
            #expect(try await client.call(.get, "/api/alerts?limit=1").object["items"]?.arrayValue?.count == 1)
            expectError(try await client.call(.get, "/api/alerts?level=severe"), .badRequest, field: "level")
            expectError(try await client.call(.get, "/api/alerts?since=now"), .badRequest, field: "since")
            expectError(try await client.call(.get, "/api/alerts?limit=-1"), .badRequest, field: "limit")

            let checkpoints = try await client.call(.get, "/api/checkpoints")
            #expect(checkpoints.status == .ok)
            let items = checkpoints.object["items"]?.arrayValue ?? []
            #expect(items.map { $0["checkpoint_id"] } == ["CP001", "CP002"])
            #expect(items.first?["cameras"]?.arrayValue?.map { $0["camera_id"] } == ["CAM001"])
            #expect(items.first?["detections_last_hour"] == 1)
            #expect(items.first?["watchlist_hits_last_hour"] == 1)

            let stats = try await client.call(.get, "/api/stats")
            #expect(stats.status == .ok)
            let counts = stats.object["items"]?.arrayValue ?? []
            #expect(Set(counts.compactMap { $0["camera_id"]?.stringValue }) == ["CAM001", "CAM002"])
            #expect(counts.compactMap { $0["count"]?.intValue }.reduce(0, +) == 2)
            #expect(try await client.call(.get, "/api/stats?camera=CAM002").object["items"]?.arrayValue?.count == 1)
            #expect(try await client.call(.get, "/api/stats?since=2026-01-01T00:00:00Z&until=2025-01-01T00:00:00Z").object["items"] == [])
            expectError(try await client.call(.get, "/api/stats?until=later"), .badRequest, field: "until")
        }
    }
}

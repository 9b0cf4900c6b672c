import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import Testing

@Suite("Watch-list hits, notifications and updates", .serialized, .timeLimit(.minutes(3)))
struct WatchlistServerTests {
    @Test(
        "exact, confusable and one-edit plates hit; others do not; each hit notifies and raises a critical alert",
        arguments: TestBrokerKind.allCases
    )
    func hits(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            try await harness.server.saveWatchlistEntry(WatchlistEntry(id: "stolen-1", plate: "AB-123-CD", reason: "stolen vehicle"))
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let notifications = try await Inbox.subscribe(camera, to: "lprserver/blacklist/notifications")
                let alerts = try await Inbox.subscribe(camera, to: "lprserver/system/alerts")
                let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/CAM001/detection/ack")
                let plates = [
                    ("exact", "ab 123 cd"), ("confusable", "A8-I23-C0"), ("edit", "AB123CX"), ("far", "ZZ999ZZ"), ("two-edits", "XB123CX"),
                ]
                for (id, plate) in plates {
                    try await camera.publish(json: try seedDetection(id: id, plate: plate), to: "lprserver/cameras/CAM001/detection")
                }
                try await acks.wait(count: plates.count, "acks") { _ in true }
                try await notifications.wait(count: 3, "notifications") { _ in true }
                try await Task.sleep(for: .milliseconds(300))
                let byDetection = Dictionary(
                    notifications.objects().map { ($0["detection_message_id"]?.stringValue ?? "?", $0) },
                    uniquingKeysWith: { a, _ in a }
                )
                #expect(Set(byDetection.keys) == ["exact", "confusable", "edit"])
                #expect(byDetection["exact"]?["distance"] == 0)
                #expect(byDetection["confusable"]?["distance"] == 0)
                #expect(byDetection["edit"]?["distance"] == 1)
                let exact = try #require(byDetection["exact"])
                #expect(exact["plate_number"] == "ab 123 cd")
                #expect(exact["matched_plate"] == "AB-123-CD")
                #expect(exact["reason"] == "stolen vehicle")
                #expect(exact["camera_id"] == "CAM001")
                #expect(exact["checkpoint_id"] == "CP001")
                #expect(exact["message_id"]?.stringValue?.isEmpty == false)
                let hitAlerts = alerts.objects().filter { $0["kind"] == "watchlist_hit" }
                #expect(hitAlerts.count == 3)
                #expect(hitAlerts.allSatisfy { $0["level"] == "critical" && $0["camera_id"] == "CAM001" })
            }
            let stored = try await harness.repository.alerts(since: nil, level: .critical, limit: 10)
            #expect(stored.filter { $0.kind == .watchlistHit }.count == 3)
        }
    }

    @Test("a change is in force for the next detection and published retained with a new version; blacklist/request republishes it")
    func updates() async throws {
        try await withLPRServer(.mosquitto) { harness in
            try await withClient(.test(harness.broker, id: "CAM002")) { camera in
                try await harness.server.saveWatchlistEntry(WatchlistEntry(id: "w1", plate: "QQ111", level: .warning, cameraIDs: ["CAM002"]))
                // A camera subscribing afterwards gets the retained list.
                let updates = try await Inbox.subscribe(camera, to: "lprserver/blacklist/updates")
                let first = try await updates.firstObject(topic: "lprserver/blacklist/updates", "the retained watch-list") {
                    $0["entries"]?.arrayValue?.isEmpty == false
                }
                let version = try #require(first["version"]?.intValue)
                #expect(first["entries"]?.arrayValue?.first?["plate"] == "QQ111")
                #expect(first["entries"]?.arrayValue?.first?["level"] == "warning")

                let notifications = try await Inbox.subscribe(camera, to: "lprserver/blacklist/notifications")
                try await camera.publish(
                    json: try seedDetection(id: "d1", camera: "CAM002", plate: "QQ111"),
                    to: "lprserver/cameras/CAM002/detection"
                )
                try await notifications.wait(count: 1, "the hit") { _ in true }

                #expect(try await harness.server.deleteWatchlistEntry(id: "w1"))
                #expect(try await harness.server.deleteWatchlistEntry(id: "w1") == false)
                let emptied = try await updates.firstObject(topic: "lprserver/blacklist/updates", "the emptied list") {
                    ($0["version"]?.intValue ?? 0) > version
                }
                #expect(emptied["entries"] == [])
                // Deleted: the same plate no longer hits.
                let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/CAM002/detection/ack")
                try await camera.publish(
                    json: try seedDetection(id: "d2", camera: "CAM002", plate: "QQ111"),
                    to: "lprserver/cameras/CAM002/detection"
                )
                try await acks.wait(count: 1, "the ack") { _ in true }
                try await Task.sleep(for: .milliseconds(200))
                #expect(notifications.messages.count == 1)

                let before = updates.messages.count
                try await camera.publish(topic: "lprserver/blacklist/request", payload: #"{"camera_id":"CAM002"}"#, qos: .atLeastOnce)
                try await updates.wait(count: before + 1, "the republished list") { _ in true }
            }
        }
    }
}

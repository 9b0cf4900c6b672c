import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import Testing

/// The stores the server can use; every repository test runs against each.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { self == .sqlite ? "SQLite" : "PostgreSQL" }

    /// Makes an empty store of this kind, runs `body` with it, and removes it.
    func with(_ body: (any LPRRepository) async throws -> Void) async throws {
        switch self {
        case .sqlite:
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            try await body(try SQLiteLPRRepository(path: directory.file("lpr.sqlite")))
        case .postgres:
            try await PostgresServer.with { server in
                let repository = try await PostgresLPRRepository(url: server.url, logger: testLogger)
                defer { repository.close() }
                try await body(repository)
            }
        }
    }
}

@Suite("LPR store: one suite, SQLite and PostgreSQL", .serialized, .timeLimit(.minutes(3)))
struct RepositoryTests {
    static let base = Date(timeIntervalSince1970: 1_800_000_000)

    static func record(
        _ id: String,
        camera: String = "CAM1",
        checkpoint: String = "CP1",
        plates: [String] = ["ABC1234"],
        at offset: TimeInterval = 0,
        alerts: [Alert] = []
    ) -> DetectionRecord {
        DetectionRecord(
            messageID: id,
            cameraID: camera,
            checkpointID: checkpoint,
            capturedAt: base.addingTimeInterval(offset),
            receivedAt: base.addingTimeInterval(offset + 0.5),
            confidence: 0.9,
            plates: plates.map { PlateRecord(number: $0, confidence: 0.8, country: "TH") },
            payload: #"{"message_id":"\#(id)","extra":[1,2.50]}"#,
            alerts: alerts
        )
    }

    static func alert(_ id: String, level: Alert.Level = .critical, kind: Alert.Kind = .watchlistHit, at offset: TimeInterval = 0) -> Alert {
        Alert(alertID: id, level: level, kind: kind, cameraID: "CAM1", message: "m \(id)", timestamp: base.addingTimeInterval(offset))
    }

    @Test("a message_id another camera's detection has is refused (other_camera), not a duplicate", arguments: StoreKind.allCases)
    func messageIDOfAnotherCamera(store: StoreKind) async throws {
        try await store.with { repository in
            #expect(try await repository.storeDetections([Self.record("n-1", camera: "CAM1")]) == [.stored])
            let again = try await repository.storeDetections([Self.record("n-1", camera: "CAM2"), Self.record("n-1", camera: "CAM1")])
            #expect(again == [.otherCamera, .duplicate])
            // Twice in one batch, from two cameras: the first is stored.
            let batch = try await repository.storeDetections([Self.record("n-2", camera: "CAM2"), Self.record("n-2", camera: "CAM1")])
            #expect(batch == [.stored, .otherCamera])
            #expect(try await repository.detectionCount() == 2)
            #expect(try await repository.detection(messageID: "n-1")?.cameraID == "CAM1")
            #expect(try await repository.detection(messageID: "n-2")?.cameraID == "CAM2")
        }
    }

    @Test("a batch stores new detections once: a message_id seen before, or twice in the batch, is a duplicate", arguments: StoreKind.allCases)
    func exactlyOnce(store: StoreKind) async throws {
        try await store.with { repository in
            let first = try await repository.storeDetections([Self.record("a"), Self.record("b", alerts: [Self.alert("hit-b")])])
            #expect(first == [.stored, .stored])
            let second = try await repository.storeDetections([
                Self.record("b", alerts: [Self.alert("hit-b-again")]), Self.record("c"), Self.record("c"),
            ])
            #expect(second == [.duplicate, .stored, .duplicate])
            #expect(try await repository.detectionCount() == 3)
            let stored = try #require(try await repository.detection(messageID: "a"))
            #expect(stored.payload == #"{"message_id":"a","extra":[1,2.50]}"#)
            #expect(stored.plates == ["ABC1234"])
            #expect(stored.capturedAt == Self.base)
            // The duplicate's alert was not stored; the stored one's was.
            let alerts = try await repository.alerts(since: nil, level: nil, limit: 10).map(\.alertID)
            #expect(alerts == ["hit-b"])
            let camera = try #require(try await repository.camera("CAM1"))
            #expect(camera.checkpointID == "CP1")
            #expect(camera.lastDetectionID != nil)
            #expect(try await repository.camera("CAM404") == nil)
        }
    }

    @Test(
        "plate searches: exact, prefix and fuzzy (OCR confusions and one edit), newest first, with filters and pages",
        arguments: StoreKind.allCases
    )
    func searches(store: StoreKind) async throws {
        try await store.with { repository in
            _ = try await repository.storeDetections([
                Self.record("1", plates: ["AB-123-CD"], at: 0), Self.record("2", camera: "CAM2", plates: ["AB123CE"], at: 10),
                Self.record("3", plates: ["A8I23CD", "ZZ999"], at: 20), Self.record("4", checkpoint: "CP2", plates: ["XY777"], at: 30),
                Self.record("5", plates: ["AB123CD"], at: 40),
            ])
            func ids(_ query: DetectionQuery) async throws -> [String] {
                try await repository.detections(matching: query).items.map(\.messageID)
            }
            #expect(try await ids(DetectionQuery(plate: .exact("ab 123 cd"))) == ["5", "1"])
            #expect(try await ids(DetectionQuery(plate: .prefix("AB12"))) == ["5", "2", "1"])
            #expect(try await ids(DetectionQuery(plate: .fuzzy("AB123CD", maximumDistance: 0))) == ["5", "3", "1"])
            #expect(try await ids(DetectionQuery(plate: .fuzzy("AB123CD", maximumDistance: 1))) == ["5", "3", "2", "1"])
            #expect(try await ids(DetectionQuery(plate: .fuzzy("AB12CD", maximumDistance: 1))) == ["5", "3", "1"])
            #expect(try await ids(DetectionQuery(plate: .exact("NOPE"))) == [])
            #expect(try await ids(DetectionQuery(camera: "CAM2")) == ["2"])
            #expect(try await ids(DetectionQuery(checkpoint: "CP2")) == ["4"])
            #expect(
                try await ids(DetectionQuery(since: Self.base.addingTimeInterval(10), until: Self.base.addingTimeInterval(30))) == ["3", "2"]
            )
            #expect(try await ids(DetectionQuery(plate: .exact("ZZ999"))) == ["3"])
            // Pages of two, newest first, until the last.
            var seen: [String] = []
            var before: Int64? = nil
            repeat {
                let page = try await repository.detections(matching: DetectionQuery(limit: 2, before: before))
                seen += page.items.map(\.messageID)
                #expect(page.items.count <= 2)
                before = page.nextBefore
            } while before != nil
            #expect(seen == ["5", "4", "3", "2", "1"])
        }
    }

    @Test("retention purges by age and by count, oldest first", arguments: StoreKind.allCases)
    func purge(store: StoreKind) async throws {
        try await store.with { repository in
            _ = try await repository.storeDetections((0..<10).map { Self.record("r\($0)", at: Double($0) * 3600) })
            let byAge = try await repository.purgeDetections(receivedBefore: Self.base.addingTimeInterval(3 * 3600), keepingNewest: nil, limit: 2)
            #expect(byAge == 2)
            let rest = try await repository.purgeDetections(receivedBefore: Self.base.addingTimeInterval(3 * 3600), keepingNewest: nil, limit: 100)
            #expect(rest == 1)
            #expect(try await repository.detection(messageID: "r2") == nil)
            #expect(try await repository.detection(messageID: "r3") != nil)
            let byCount = try await repository.purgeDetections(receivedBefore: nil, keepingNewest: 4, limit: 100)
            #expect(byCount == 3)
            #expect(try await repository.detectionCount() == 4)
            #expect(try await repository.detections(matching: DetectionQuery(plate: .exact("ABC1234"))).items.count == 4)
        }
    }

    @Test("cameras: changes are atomic read-modify-writes; a never-heard-of camera is unknown", arguments: StoreKind.allCases)
    func cameras(store: StoreKind) async throws {
        try await store.with { repository in
            let unchanged = try await repository.updateCamera("CAM9") { record in record.online }
            #expect(unchanged == nil)
            #expect(try await repository.camera("CAM9") == nil)
            #expect(try await repository.cameras().isEmpty)
            // Fifty concurrent increments of a counter kept in active_problems: none lost.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        try await repository.updateCamera("CAM9") { record in
                            record.firstSeen = record.firstSeen ?? Self.base
                            let count = Int(record.activeProblems.first ?? "0") ?? 0
                            record.activeProblems = [String(count + 1)]
                        }
                    }
                }
                try await group.waitForAll()
            }
            let record = try #require(try await repository.camera("CAM9"))
            #expect(record.activeProblems == ["50"])
            #expect(record.firstSeen == Self.base)
            try await repository.appendHealth(HealthRecord(cameraID: "CAM9", receivedAt: Self.base, status: "healthy", payload: "{}"))
            try await repository.appendHealth(
                HealthRecord(cameraID: "CAM9", receivedAt: Self.base.addingTimeInterval(1), status: "degraded", payload: "{}")
            )
            #expect(try await repository.healthHistory(camera: "CAM9", limit: 10).map(\.status) == ["degraded", "healthy"])
        }
    }

    @Test("the watch-list: entries saved, replaced and deleted, each change a new version", arguments: StoreKind.allCases)
    func watchlist(store: StoreKind) async throws {
        try await store.with { repository in
            #expect(try await repository.watchlist().version == 0)
            let v1 = try await repository.saveWatchlistEntry(WatchlistEntry(id: "w1", plate: "AAA111", reason: "stolen"))
            let v2 = try await repository.saveWatchlistEntry(WatchlistEntry(id: "w2", plate: "BBB222", cameraIDs: ["CAM1"]))
            let v3 = try await repository.saveWatchlistEntry(WatchlistEntry(id: "w1", plate: "AAA111", reason: "recovered", level: .info))
            #expect(v1 < v2 && v2 < v3)
            let list = try await repository.watchlist()
            #expect(list.version == v3)
            #expect(list.entries.map(\.id) == ["w1", "w2"])
            #expect(list.entries.first?.reason == "recovered")
            #expect(list.entries.last?.cameraIDs == ["CAM1"])
            #expect(try await repository.deleteWatchlistEntry(id: "w1") == v3 + 1)
            #expect(try await repository.deleteWatchlistEntry(id: "w1") == nil)
            #expect(try await repository.watchlist().entries.map(\.id) == ["w2"])
        }
    }

    @Test("alerts by time and level; commands and their outcomes; a late answer replaces a timeout", arguments: StoreKind.allCases)
    func alertsAndCommands(store: StoreKind) async throws {
        try await store.with { repository in
            try await repository.insertAlerts([
                Self.alert("i", level: .info, kind: .cameraOnline, at: 0), Self.alert("w", level: .warning, kind: .cameraOffline, at: 10),
                Self.alert("c", level: .critical, at: 20),
            ])
            #expect(try await repository.alerts(since: nil, level: nil, limit: 10).map(\.alertID) == ["c", "w", "i"])
            #expect(try await repository.alerts(since: nil, level: .warning, limit: 10).map(\.alertID) == ["c", "w"])
            #expect(try await repository.alerts(since: Self.base.addingTimeInterval(5), level: nil, limit: 10).map(\.alertID) == ["c", "w"])
            #expect(try await repository.alerts(since: nil, level: nil, limit: 1).map(\.alertID) == ["c"])

            let command = ControlCommand(messageID: "cmd-1", timestamp: Self.base, cameraID: "CAM1", command: "ping")
            try await repository.recordCommand(command, sentAt: Self.base)
            #expect(try await repository.command(messageID: "cmd-1")?.status == "pending")
            try await repository.recordCommandOutcome(messageID: "cmd-1", status: "timeout", response: nil, at: Self.base)
            try await repository.recordCommandOutcome(messageID: "cmd-1", status: "ok", response: ["pong": true], at: Self.base)
            try await repository.recordCommandOutcome(messageID: "cmd-1", status: "error", response: nil, at: Self.base)
            let record = try #require(try await repository.command(messageID: "cmd-1"))
            #expect(record.status == "ok")
            #expect(record.response == #"{"pong":true}"#)
        }
    }

    @Test(
        "history retention: health history, alerts and commands from before the cutoff go, a batch at a time; newer ones stay",
        arguments: StoreKind.allCases
    )
    func purgeHistory(store: StoreKind) async throws {
        try await store.with { repository in
            for hour in 0..<6 {
                let at = Self.base.addingTimeInterval(Double(hour) * 3600)
                try await repository.appendHealth(HealthRecord(cameraID: "CAM1", receivedAt: at, status: "h\(hour)", payload: "{}"))
                try await repository.insertAlerts([Self.alert("a\(hour)", at: Double(hour) * 3600)])
                try await repository.recordCommand(
                    ControlCommand(messageID: "c\(hour)", timestamp: at, cameraID: "CAM1", command: "ping"),
                    sentAt: at
                )
            }
            let cutoff = Self.base.addingTimeInterval(3 * 3600)
            #expect(try await repository.purgeHistory(before: cutoff, limit: 2) == 6, "two of each kind")
            #expect(try await repository.purgeHistory(before: cutoff, limit: 100) == 3)
            #expect(try await repository.purgeHistory(before: cutoff, limit: 100) == 0)
            #expect(try await repository.healthHistory(camera: "CAM1", limit: 10).map(\.status) == ["h5", "h4", "h3"])
            #expect(try await repository.alerts(since: nil, level: nil, limit: 10).map(\.alertID) == ["a5", "a4", "a3"])
            #expect(try await repository.command(messageID: "c2") == nil)
            #expect(try await repository.command(messageID: "c3") != nil)
        }
    }

    @Test("leases: one holder at a time, renewable by it, free once expired or released", arguments: StoreKind.allCases)
    func leases(store: StoreKind) async throws {
        try await store.with { repository in
            let now = Self.base
            #expect(try await repository.acquireLease("system", holder: "a", until: now.addingTimeInterval(30), now: now))
            #expect(try await repository.acquireLease("system", holder: "b", until: now.addingTimeInterval(30), now: now) == false)
            #expect(try await repository.acquireLease("system", holder: "a", until: now.addingTimeInterval(60), now: now.addingTimeInterval(20)))
            #expect(
                try await repository.acquireLease("system", holder: "b", until: now.addingTimeInterval(90), now: now.addingTimeInterval(50)) == false
            )
            #expect(try await repository.acquireLease("system", holder: "b", until: now.addingTimeInterval(120), now: now.addingTimeInterval(61)))
            try await repository.releaseLease("system", holder: "b")
            #expect(try await repository.acquireLease("system", holder: "a", until: now.addingTimeInterval(200), now: now.addingTimeInterval(62)))
        }
    }

    @Test("hourly counts per camera and checkpoint figures", arguments: StoreKind.allCases)
    func statistics(store: StoreKind) async throws {
        try await store.with { repository in
            _ = try await repository.storeDetections([
                Self.record("s1", plates: ["AAA"], at: 0), Self.record("s2", plates: ["AAA"], at: 60),
                Self.record("s3", camera: "CAM2", plates: ["BBB"], at: 3700, alerts: [Self.alert("hit-s3", at: 3700)]),
            ])
            let counts = try await repository.hourlyCounts(
                since: Self.base.addingTimeInterval(-3600),
                until: Self.base.addingTimeInterval(7200),
                camera: nil
            )
            #expect(counts.map(\.count) == [2, 1])
            #expect(counts.map(\.cameraID) == ["CAM1", "CAM2"])
            #expect(counts.first.map { Int($0.hour.timeIntervalSince1970) % 3600 } == 0)
            let onlyCam2 = try await repository.hourlyCounts(
                since: Self.base.addingTimeInterval(-3600),
                until: Self.base.addingTimeInterval(7200),
                camera: "CAM2"
            )
            #expect(onlyCam2.map(\.count) == [1])
            let figures = try await repository.checkpointFigures(since: Self.base.addingTimeInterval(-1))
            #expect(figures.count == 1)
            #expect(figures.first?.checkpointID == "CP1")
            #expect(figures.first?.detections == 3)
            #expect(figures.first?.uniquePlates == 2)
            #expect(figures.first?.watchlistHits == 1)
            #expect(figures.first?.meanConfidence.map { abs($0 - 0.9) < 1e-9 } == true)
        }
    }
}

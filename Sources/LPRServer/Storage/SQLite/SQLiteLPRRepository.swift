import Foundation
import GRDB
import LPRModel

/// The LPR store in one SQLite file (WAL, `synchronous = FULL` by default): the embedded default.
///
/// Plate searches use indexes: `detection_plate(normalized, sequence)` for exact and prefix
/// searches, `detection_plate(folded, sequence)` for fuzzy ones, probed with the query's
/// one-edit neighbourhood (`folded IN (...)`), so no search reads the whole table.
public final class SQLiteLPRRepository: LPRRepository {
    /// How hard a commit tries to be on disk before it returns.
    public enum Durability: Sendable, Hashable {
        /// fsync on every commit: survives a power cut.
        case powerLoss
        /// fsync at checkpoints only: survives the process being killed, not a power cut.
        case processCrash
    }

    let pool: DatabasePool
    public let path: String

    /// Opens or creates the store at `path` and migrates it.
    public init(path: String, durability: Durability = .powerLoss) throws {
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let synchronous = durability == .powerLoss ? "FULL" : "NORMAL"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try SQLiteMigrations.migrator.migrate(pool)
        } catch {
            throw RepositoryError("cannot open the LPR store \(path): \(error)")
        }
    }

    public func migrate() async throws {
        try SQLiteMigrations.migrator.migrate(pool)
    }

    // MARK: Detections

    public func storeDetections(_ batch: [DetectionRecord]) async throws -> [StoreOutcome] {
        guard !batch.isEmpty else { return [] }
        return try await pool.write { db in
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO detection (message_id, camera_id, checkpoint_id, captured_at, received_at, confidence, plates, payload)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING
                    """
            )
            let insertPlate = try db.cachedStatement(
                sql: "INSERT INTO detection_plate (sequence, position, number, normalized, folded, confidence, country) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )
            var outcomes: [StoreOutcome] = []
            outcomes.reserveCapacity(batch.count)
            var latestPerCamera: [String: DetectionRecord] = [:]
            var alerts: [Alert] = []
            for record in batch {
                try insert.execute(arguments: [
                    record.messageID, record.cameraID, record.checkpointID, record.capturedAt.timeIntervalSince1970,
                    record.receivedAt.timeIntervalSince1970, record.confidence, record.plates.map(\.number).joined(separator: "\n"),
                    record.payload,
                ])
                guard db.changesCount == 1 else {
                    let owner = try String.fetchOne(db, sql: "SELECT camera_id FROM detection WHERE message_id = ?", arguments: [record.messageID])
                    outcomes.append(owner == record.cameraID ? .duplicate : .otherCamera)
                    continue
                }
                let sequence = db.lastInsertedRowID
                for (position, plate) in record.plates.enumerated() {
                    try insertPlate.execute(arguments: [
                        sequence, position, plate.number, plate.normalized, plate.folded, plate.confidence, plate.country,
                    ])
                }
                outcomes.append(.stored)
                alerts += record.alerts.map { alert in
                    var alert = alert
                    alert.details["checkpoint_id"] = alert.details["checkpoint_id"] ?? .string(record.checkpointID)
                    return alert
                }
                if let previous = latestPerCamera[record.cameraID], previous.capturedAt > record.capturedAt { continue }
                latestPerCamera[record.cameraID] = record
            }
            for record in latestPerCamera.values {
                try db.execute(
                    sql: """
                        INSERT INTO camera (camera_id, checkpoint_id, first_seen, last_seen, last_detection_at, last_detection_id)
                        VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT (camera_id) DO UPDATE SET checkpoint_id = excluded.checkpoint_id,
                            last_seen = max(coalesce(last_seen, 0), excluded.last_seen),
                            last_detection_at = excluded.last_detection_at, last_detection_id = excluded.last_detection_id
                        """,
                    arguments: [
                        record.cameraID, record.checkpointID, record.receivedAt.timeIntervalSince1970, record.receivedAt.timeIntervalSince1970,
                        record.capturedAt.timeIntervalSince1970, record.messageID,
                    ]
                )
            }
            try Self.insertAlerts(alerts, db: db)
            return outcomes
        }
    }

    private static let detectionColumns =
        "d.sequence, d.message_id, d.camera_id, d.checkpoint_id, d.captured_at, d.received_at, d.confidence, d.plates, d.payload"

    private static func detection(from row: Row) -> StoredDetection {
        let plates: String = row[7]
        return StoredDetection(
            sequence: row[0],
            messageID: row[1],
            cameraID: row[2],
            checkpointID: row[3],
            capturedAt: Date(timeIntervalSince1970: row[4]),
            receivedAt: Date(timeIntervalSince1970: row[5]),
            confidence: row[6],
            plates: plates.isEmpty ? [] : plates.split(separator: "\n", omittingEmptySubsequences: false).map(String.init),
            payload: row[8]
        )
    }

    public func detection(messageID: String) async throws -> StoredDetection? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.detectionColumns) FROM detection d WHERE d.message_id = ?", arguments: [messageID])
                .map(Self.detection(from:))
        }
    }

    public func detections(matching query: DetectionQuery) async throws -> DetectionPage {
        let limit = max(1, min(query.limit, 1000))
        return try await pool.read { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            var from = "detection d"
            var order = "d.sequence"
            if let plate = query.plate {
                from = "detection_plate p JOIN detection d ON d.sequence = p.sequence"
                order = "p.sequence"
                switch plate {
                case .exact(let text):
                    conditions.append("p.normalized = ?")
                    _ = arguments.append(contentsOf: [PlateNormalizer.normalize(text)])
                case .prefix(let text):
                    let normalized = PlateNormalizer.normalize(text)
                    conditions.append("p.normalized >= ? AND p.normalized < ?")
                    _ = arguments.append(contentsOf: [normalized, normalized + "\u{10FFFF}"])
                case .fuzzy(let text, let distance):
                    let folded = PlateNormalizer.fold(text)
                    if distance <= 0 {
                        conditions.append("p.folded = ?")
                        _ = arguments.append(contentsOf: [folded])
                    } else {
                        let keys = Array(PlateNormalizer.neighbourhood(ofFolded: folded))
                        conditions.append("p.folded IN (\(Array(repeating: "?", count: keys.count).joined(separator: ",")))")
                        _ = arguments.append(contentsOf: StatementArguments(keys))
                    }
                }
            }
            if let camera = query.camera {
                conditions.append("d.camera_id = ?")
                _ = arguments.append(contentsOf: [camera])
            }
            if let checkpoint = query.checkpoint {
                conditions.append("d.checkpoint_id = ?")
                _ = arguments.append(contentsOf: [checkpoint])
            }
            if let since = query.since {
                conditions.append("d.captured_at >= ?")
                _ = arguments.append(contentsOf: [since.timeIntervalSince1970])
            }
            if let until = query.until {
                conditions.append("d.captured_at < ?")
                _ = arguments.append(contentsOf: [until.timeIntervalSince1970])
            }
            if let before = query.before {
                conditions.append("\(order) < ?")
                _ = arguments.append(contentsOf: [before])
            }
            let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            let distinct = query.plate == nil ? "" : "DISTINCT "
            _ = arguments.append(contentsOf: [limit + 1])
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT \(distinct)\(Self.detectionColumns) FROM \(from) \(whereClause) ORDER BY \(order) DESC LIMIT ?",
                arguments: arguments
            )
            var items = rows.map(Self.detection(from:))
            if case .fuzzy(let text, let distance)? = query.plate, distance > 1 {
                items = Self.filterFuzzy(items, text: text, distance: distance)
            }
            let hasMore = items.count > limit
            if hasMore { items.removeLast(items.count - limit) }
            return DetectionPage(items: items, nextBefore: hasMore ? items.last?.sequence : nil)
        }
    }

    /// Keeps detections with a plate within `distance` of `text` (after folding).
    static func filterFuzzy(_ items: [StoredDetection], text: String, distance: Int) -> [StoredDetection] {
        let wanted = Array(PlateNormalizer.fold(text).unicodeScalars)
        return items.filter { item in
            item.plates.contains { PlateNormalizer.distance(Array(PlateNormalizer.fold($0).unicodeScalars), wanted, limit: distance) != nil }
        }
    }

    public func purgeDetections(receivedBefore olderThan: Date?, keepingNewest keep: Int?, limit: Int) async throws -> Int {
        try await pool.write { db in
            var cutoff: Int64 = 0
            if let olderThan {
                // The newest sequence received before the cutoff: sequences grow with time of receipt.
                cutoff =
                    try Int64.fetchOne(
                        db,
                        sql: "SELECT max(sequence) FROM detection WHERE received_at < ?",
                        arguments: [olderThan.timeIntervalSince1970]
                    ) ?? 0
            }
            if let keep, keep >= 0 {
                let newest = try Int64.fetchOne(db, sql: "SELECT sequence FROM detection ORDER BY sequence DESC LIMIT 1 OFFSET ?", arguments: [keep])
                cutoff = max(cutoff, newest ?? 0)
            }
            guard cutoff > 0 else { return 0 }
            try db.execute(
                sql: """
                    DELETE FROM detection_plate WHERE sequence IN (SELECT sequence FROM detection WHERE sequence <= ? ORDER BY sequence LIMIT ?)
                    """,
                arguments: [cutoff, limit]
            )
            try db.execute(
                sql: "DELETE FROM detection WHERE sequence IN (SELECT sequence FROM detection WHERE sequence <= ? ORDER BY sequence LIMIT ?)",
                arguments: [cutoff, limit]
            )
            return db.changesCount
        }
    }

    public func purgeHistory(before olderThan: Date, limit: Int) async throws -> Int {
        try await pool.write { db in
            let cutoff = olderThan.timeIntervalSince1970
            var deleted = 0
            // Rows are appended in time order: the oldest are the first ids.
            for sql in [
                "DELETE FROM health_history WHERE id IN (SELECT id FROM health_history WHERE received_at < ? ORDER BY id LIMIT ?)",
                "DELETE FROM alert WHERE sequence IN (SELECT sequence FROM alert WHERE timestamp < ? ORDER BY timestamp LIMIT ?)",
                "DELETE FROM command WHERE message_id IN (SELECT message_id FROM command WHERE sent_at < ? LIMIT ?)",
            ] {
                try db.execute(sql: sql, arguments: [cutoff, limit])
                deleted += db.changesCount
            }
            return deleted
        }
    }

    public func hourlyCounts(since: Date, until: Date, camera: String?) async throws -> [HourlyCount] {
        try await pool.read { db in
            var sql = """
                SELECT CAST(received_at / 3600 AS INTEGER) * 3600 AS hour, camera_id, count(*) FROM detection
                WHERE received_at >= ? AND received_at < ?
                """
            var arguments: StatementArguments = [since.timeIntervalSince1970, until.timeIntervalSince1970]
            if let camera {
                sql += " AND camera_id = ?"
                _ = arguments.append(contentsOf: [camera])
            }
            sql += " GROUP BY hour, camera_id ORDER BY hour, camera_id"
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map {
                HourlyCount(hour: Date(timeIntervalSince1970: Double($0[0] as Int64)), cameraID: $0[1], count: $0[2])
            }
        }
    }

    public func checkpointFigures(since: Date) async throws -> [CheckpointFigures] {
        try await pool.read { db in
            let time = since.timeIntervalSince1970
            let hits = try Row.fetchAll(
                db,
                sql: "SELECT checkpoint_id, count(*) FROM alert WHERE kind = 'watchlist_hit' AND timestamp >= ? GROUP BY checkpoint_id",
                arguments: [time]
            ).reduce(into: [String: Int]()) { result, row in
                if let checkpoint: String = row[0] { result[checkpoint] = row[1] }
            }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT d.checkpoint_id, count(DISTINCT d.sequence), count(DISTINCT p.normalized), avg(d.confidence)
                    FROM detection d LEFT JOIN detection_plate p ON p.sequence = d.sequence
                    WHERE d.sequence >= coalesce((SELECT min(sequence) FROM detection WHERE received_at >= ?), 9223372036854775807)
                    GROUP BY d.checkpoint_id ORDER BY d.checkpoint_id
                    """,
                arguments: [time]
            )
            return rows.map { row in
                let checkpoint: String = row[0]
                return CheckpointFigures(
                    checkpointID: checkpoint,
                    detections: row[1],
                    uniquePlates: row[2],
                    meanConfidence: row[3],
                    watchlistHits: hits[checkpoint] ?? 0
                )
            }
        }
    }

    public func detectionCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM detection") ?? 0 }
    }

    // MARK: Cameras

    private static let cameraColumns = """
        camera_id, checkpoint_id, online, first_seen, last_seen, last_health_at, health, health_status, active_problems,
        desired_config, desired_at, reported_config, reported_at, last_detection_at, last_detection_id
        """

    private static func camera(from row: Row) -> CameraRecord {
        var record = CameraRecord(cameraID: row[0])
        record.checkpointID = row[1]
        record.online = (row[2] as Int64?).map { $0 != 0 }
        record.firstSeen = (row[3] as Double?).map(Date.init(timeIntervalSince1970:))
        record.lastSeen = (row[4] as Double?).map(Date.init(timeIntervalSince1970:))
        record.lastHealthAt = (row[5] as Double?).map(Date.init(timeIntervalSince1970:))
        record.health = row[6]
        record.healthStatus = row[7]
        let problems: String = row[8] ?? ""
        record.activeProblems = problems.isEmpty ? [] : problems.split(separator: ",").map(String.init)
        record.desiredConfig = row[9]
        record.desiredAt = (row[10] as Double?).map(Date.init(timeIntervalSince1970:))
        record.reportedConfig = row[11]
        record.reportedAt = (row[12] as Double?).map(Date.init(timeIntervalSince1970:))
        record.lastDetectionAt = (row[13] as Double?).map(Date.init(timeIntervalSince1970:))
        record.lastDetectionID = row[14]
        return record
    }

    public func camera(_ id: String) async throws -> CameraRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.cameraColumns) FROM camera WHERE camera_id = ?", arguments: [id]).map(Self.camera(from:))
        }
    }

    public func cameras() async throws -> [CameraRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.cameraColumns) FROM camera ORDER BY camera_id").map(Self.camera(from:))
        }
    }

    public func updateCamera<Result: Sendable>(_ id: String, _ change: @Sendable (inout CameraRecord) -> Result) async throws -> Result {
        try await pool.write { db in
            var record =
                try Row.fetchOne(db, sql: "SELECT \(Self.cameraColumns) FROM camera WHERE camera_id = ?", arguments: [id]).map(Self.camera(from:))
                ?? CameraRecord(cameraID: id)
            let before = record
            let result = change(&record)
            guard record != before else { return result }
            try db.execute(
                sql: """
                    INSERT INTO camera (\(Self.cameraColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (camera_id) DO UPDATE SET checkpoint_id = excluded.checkpoint_id, online = excluded.online,
                        first_seen = excluded.first_seen, last_seen = excluded.last_seen, last_health_at = excluded.last_health_at,
                        health = excluded.health, health_status = excluded.health_status, active_problems = excluded.active_problems,
                        desired_config = excluded.desired_config, desired_at = excluded.desired_at, reported_config = excluded.reported_config,
                        reported_at = excluded.reported_at, last_detection_at = excluded.last_detection_at,
                        last_detection_id = excluded.last_detection_id
                    """,
                arguments: [
                    id, record.checkpointID, record.online.map { $0 ? 1 : 0 }, record.firstSeen?.timeIntervalSince1970,
                    record.lastSeen?.timeIntervalSince1970, record.lastHealthAt?.timeIntervalSince1970, record.health, record.healthStatus,
                    record.activeProblems.joined(separator: ","), record.desiredConfig, record.desiredAt?.timeIntervalSince1970,
                    record.reportedConfig, record.reportedAt?.timeIntervalSince1970, record.lastDetectionAt?.timeIntervalSince1970,
                    record.lastDetectionID,
                ]
            )
            return result
        }
    }

    public func appendHealth(_ record: HealthRecord) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO health_history (camera_id, received_at, status, payload) VALUES (?, ?, ?, ?)",
                arguments: [record.cameraID, record.receivedAt.timeIntervalSince1970, record.status, record.payload]
            )
        }
    }

    public func healthHistory(camera: String, limit: Int) async throws -> [HealthRecord] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT camera_id, received_at, status, payload FROM health_history WHERE camera_id = ? ORDER BY id DESC LIMIT ?",
                arguments: [camera, limit]
            ).map { HealthRecord(cameraID: $0[0], receivedAt: Date(timeIntervalSince1970: $0[1]), status: $0[2], payload: $0[3]) }
        }
    }

    // MARK: Watch-list

    public func watchlist() async throws -> (version: Int, entries: [WatchlistEntry]) {
        try await pool.read { db in
            let version = try Int.fetchOne(db, sql: "SELECT value FROM setting WHERE key = 'watchlist_version'") ?? 0
            let entries = try Row.fetchAll(db, sql: "SELECT payload FROM watchlist_entry ORDER BY position").compactMap { row -> WatchlistEntry? in
                let payload: String = row[0]
                guard let json = try? JSONObject.parse(Array(payload.utf8)) else { return nil }
                return try? WatchlistEntry(validating: json)
            }
            return (version, entries)
        }
    }

    private static func bumpWatchlistVersion(_ db: Database) throws -> Int {
        try db.execute(
            sql: "INSERT INTO setting (key, value) VALUES ('watchlist_version', 1) ON CONFLICT (key) DO UPDATE SET value = value + 1"
        )
        return try Int.fetchOne(db, sql: "SELECT value FROM setting WHERE key = 'watchlist_version'") ?? 1
    }

    public func saveWatchlistEntry(_ entry: WatchlistEntry) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO watchlist_entry (id, payload, position) VALUES (?, ?, (SELECT coalesce(max(position), 0) + 1 FROM watchlist_entry))
                    ON CONFLICT (id) DO UPDATE SET payload = excluded.payload
                    """,
                arguments: [entry.id, JSONValue.object(entry.json).jsonText]
            )
            return try Self.bumpWatchlistVersion(db)
        }
    }

    public func deleteWatchlistEntry(id: String) async throws -> Int? {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM watchlist_entry WHERE id = ?", arguments: [id])
            guard db.changesCount > 0 else { return nil }
            return try Self.bumpWatchlistVersion(db)
        }
    }

    // MARK: Alerts

    static func insertAlerts(_ alerts: [Alert], db: Database) throws {
        guard !alerts.isEmpty else { return }
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO alert (alert_id, level, kind, camera_id, checkpoint_id, message, timestamp, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (alert_id) DO NOTHING
                """
        )
        for alert in alerts {
            try statement.execute(arguments: [
                alert.alertID, alert.level.rawValue, alert.kind.rawValue, alert.cameraID, alert.details["checkpoint_id"]?.stringValue,
                alert.message, alert.timestamp.timeIntervalSince1970, JSONValue.object(alert.json).jsonText,
            ])
        }
    }

    public func insertAlerts(_ alerts: [Alert]) async throws {
        guard !alerts.isEmpty else { return }
        try await pool.write { db in try Self.insertAlerts(alerts, db: db) }
    }

    public func alerts(since: Date?, level: Alert.Level?, limit: Int) async throws -> [Alert] {
        try await pool.read { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let since {
                conditions.append("timestamp >= ?")
                _ = arguments.append(contentsOf: [since.timeIntervalSince1970])
            }
            if let level {
                let levels = Alert.Level.allCases.filter { $0 >= level }.map(\.rawValue)
                conditions.append("level IN (\(levels.map { _ in "?" }.joined(separator: ",")))")
                _ = arguments.append(contentsOf: StatementArguments(levels))
            }
            _ = arguments.append(contentsOf: [limit])
            let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            return try String.fetchAll(db, sql: "SELECT payload FROM alert \(whereClause) ORDER BY sequence DESC LIMIT ?", arguments: arguments)
                .compactMap { payload in (try? JSONObject.parse(Array(payload.utf8))).flatMap { try? Alert(validating: $0) } }
        }
    }

    // MARK: Commands

    public func recordCommand(_ command: ControlCommand, sentAt: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO command (message_id, camera_id, command, payload, sent_at, status) VALUES (?, ?, ?, ?, ?, 'pending')
                    ON CONFLICT (message_id) DO NOTHING
                    """,
                arguments: [
                    command.messageID, command.cameraID, command.command, JSONValue.object(command.json).jsonText, sentAt.timeIntervalSince1970,
                ]
            )
        }
    }

    public func recordCommandOutcome(messageID: String, status: String, response: JSONObject?, at: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE command SET status = ?, response = ?, answered_at = ? WHERE message_id = ? AND status IN ('pending', 'timeout')",
                arguments: [status, response.map { JSONValue.object($0).jsonText }, at.timeIntervalSince1970, messageID]
            )
        }
    }

    public func command(messageID: String) async throws -> CommandRecord? {
        try await pool.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT message_id, camera_id, command, sent_at, status, response, answered_at FROM command WHERE message_id = ?",
                arguments: [messageID]
            ).map {
                CommandRecord(
                    messageID: $0[0],
                    cameraID: $0[1],
                    command: $0[2],
                    sentAt: Date(timeIntervalSince1970: $0[3]),
                    status: $0[4],
                    response: $0[5],
                    answeredAt: ($0[6] as Double?).map(Date.init(timeIntervalSince1970:))
                )
            }
        }
    }

    // MARK: Leases

    public func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO lease (name, holder, expires_at) VALUES (?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                    WHERE lease.holder = excluded.holder OR lease.expires_at < ?
                    """,
                arguments: [name, holder, until.timeIntervalSince1970, now.timeIntervalSince1970]
            )
            return db.changesCount > 0
        }
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM lease WHERE name = ? AND holder = ?", arguments: [name, holder])
        }
    }
}

import Foundation
import LPRModel
import Logging
import NIOCore
import PostgresNIO

/// The LPR store in PostgreSQL, for several servers sharing one database: exactly-once holds
/// across them because `message_id` is unique and a duplicate insert does nothing.
///
/// Plate searches use B-tree indexes on `detection_plate (normalized, sequence)` and
/// `(folded, sequence)`: exact and prefix searches on the first, fuzzy ones by probing the
/// second with the query's one-edit neighbourhood (`folded = ANY($1)`), as the SQLite store does.
public final class PostgresLPRRepository: LPRRepository {
    let client: PostgresClient
    let logger: Logger
    private let runner: Task<Void, Never>

    /// Connects to the database at `url` (`postgres://user:password@host:port/database`,
    /// `?sslmode=disable|prefer|require`) and migrates it.
    public init(url: String, logger: Logger = Logger(label: "databus.lpr-server.postgres")) async throws {
        let configuration = try Self.configuration(from: url)
        self.logger = logger
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let client = self.client
        runner = Task { await client.run() }
        do {
            try await migrate()
        } catch {
            runner.cancel()
            throw RepositoryError("cannot use the PostgreSQL database \(Self.redacted(url)): \(String(reflecting: error))")
        }
    }

    deinit { runner.cancel() }

    /// Closes the connections.
    public func close() { runner.cancel() }

    /// Reads a `postgres://` URL.
    static func configuration(from url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty
        else {
            throw RepositoryError("not a PostgreSQL URL: \(redacted(url)) (expected postgres://user:password@host:port/database)")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        let sslMode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: throw RepositoryError("unknown sslmode \(sslMode) (disable, prefer or require)")
        }
        var configuration = PostgresClient.Configuration(
            host: host,
            port: components.port ?? 5432,
            username: components.user ?? "postgres",
            password: components.password,
            database: database.isEmpty ? nil : database,
            tls: tls
        )
        configuration.options.maximumConnections = 10
        return configuration
    }

    /// The URL without its password, for messages.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }

    // MARK: Migrations

    public func migrate() async throws {
        try await client.withTransaction(logger: logger) { connection in
            // One server migrates at a time.
            try await connection.query("SELECT pg_advisory_xact_lock(7020513)", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS schema_migration (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: logger
            )
            var applied: Set<String> = []
            for try await name in try await connection.query("SELECT name FROM schema_migration", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            for migration in PostgresMigrations.all where !applied.contains(migration.name) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO schema_migration (name) VALUES (\(migration.name))", logger: logger)
            }
        }
    }

    // MARK: Detections

    public func storeDetections(_ batch: [DetectionRecord]) async throws -> [StoreOutcome] {
        guard !batch.isEmpty else { return [] }
        return try await client.withTransaction(logger: logger) { connection in
            let rows = try await connection.query(
                """
                INSERT INTO detection (message_id, camera_id, checkpoint_id, captured_at, received_at, confidence, plates, payload)
                SELECT m, c, k, to_timestamp(t), to_timestamp(r), NULLIF(f, 'NaN'::float8), p, j
                FROM unnest(\(batch.map(\.messageID)), \(batch.map(\.cameraID)), \(batch.map(\.checkpointID)),
                            \(batch.map { $0.capturedAt.timeIntervalSince1970 }), \(batch.map { $0.receivedAt.timeIntervalSince1970 }),
                            \(batch.map { $0.confidence ?? .nan }), \(batch.map { $0.plates.map(\.number).joined(separator: "\n") }),
                            \(batch.map(\.payload))) WITH ORDINALITY AS input(m, c, k, t, r, f, p, j, n)
                ORDER BY n
                ON CONFLICT (message_id) DO NOTHING
                RETURNING message_id, sequence
                """,
                logger: logger
            )
            var inserted: [String: Int64] = [:]
            for try await (messageID, sequence) in rows.decode((String, Int64).self) { inserted[messageID] = sequence }
            // Whose detection holds each message_id that was not inserted (the same camera's: a
            // duplicate; another's: refused).
            let conflicting = batch.map(\.messageID).filter { inserted[$0] == nil }
            var owners: [String: String] = [:]
            if !conflicting.isEmpty {
                let ownerRows = try await connection.query(
                    "SELECT message_id, camera_id FROM detection WHERE message_id = ANY(\(conflicting))",
                    logger: logger
                )
                for try await (messageID, cameraID) in ownerRows.decode((String, String).self) { owners[messageID] = cameraID }
            }
            var outcomes: [StoreOutcome] = []
            var plateSequences: [Int64] = []
            var platePositions: [Int32] = []
            var plateNumbers: [String] = []
            var plateNormalized: [String] = []
            var plateFolded: [String] = []
            var plateConfidences: [Double] = []
            var plateCountries: [String] = []
            var alerts: [Alert] = []
            var latestPerCamera: [String: DetectionRecord] = [:]
            for record in batch {
                // A message_id twice in one batch: the first is stored, the second a duplicate
                // (or refused, from another camera).
                guard let sequence = inserted.removeValue(forKey: record.messageID) else {
                    // A message_id stored earlier in this batch is in `owners` from below.
                    outcomes.append(owners[record.messageID, default: record.cameraID] == record.cameraID ? .duplicate : .otherCamera)
                    continue
                }
                outcomes.append(.stored)
                owners[record.messageID] = record.cameraID
                for (position, plate) in record.plates.enumerated() {
                    plateSequences.append(sequence)
                    platePositions.append(Int32(position))
                    plateNumbers.append(plate.number)
                    plateNormalized.append(plate.normalized)
                    plateFolded.append(plate.folded)
                    plateConfidences.append(plate.confidence ?? .nan)
                    plateCountries.append(plate.country ?? "")
                }
                alerts += record.alerts.map { alert in
                    var alert = alert
                    alert.details["checkpoint_id"] = alert.details["checkpoint_id"] ?? .string(record.checkpointID)
                    return alert
                }
                if let previous = latestPerCamera[record.cameraID], previous.capturedAt > record.capturedAt { continue }
                latestPerCamera[record.cameraID] = record
            }
            if !plateSequences.isEmpty {
                try await connection.query(
                    """
                    INSERT INTO detection_plate (sequence, position, number, normalized, folded, confidence, country)
                    SELECT s, o, n, z, f, NULLIF(c, 'NaN'::float8), NULLIF(k, '')
                    FROM unnest(\(plateSequences), \(platePositions), \(plateNumbers), \(plateNormalized), \(plateFolded),
                                \(plateConfidences), \(plateCountries)) AS input(s, o, n, z, f, c, k)
                    """,
                    logger: logger
                )
            }
            for record in latestPerCamera.values.sorted(by: { $0.cameraID < $1.cameraID }) {
                let received = record.receivedAt.timeIntervalSince1970
                try await connection.query(
                    """
                    INSERT INTO camera (camera_id, checkpoint_id, first_seen, last_seen, last_detection_at, last_detection_id)
                    VALUES (\(record.cameraID), \(record.checkpointID), to_timestamp(\(received)), to_timestamp(\(received)),
                            to_timestamp(\(record.capturedAt.timeIntervalSince1970)), \(record.messageID))
                    ON CONFLICT (camera_id) DO UPDATE SET checkpoint_id = excluded.checkpoint_id,
                        first_seen = coalesce(camera.first_seen, excluded.first_seen),
                        last_seen = greatest(camera.last_seen, excluded.last_seen),
                        last_detection_at = excluded.last_detection_at, last_detection_id = excluded.last_detection_id
                    """,
                    logger: logger
                )
            }
            try await Self.insertAlerts(alerts, connection: connection, logger: logger)
            return outcomes
        }
    }

    private static let detectionColumns =
        "d.sequence, d.message_id, d.camera_id, d.checkpoint_id, d.captured_at, d.received_at, d.confidence, d.plates, d.payload"

    private typealias DetectionRow = (Int64, String, String, String, Date, Date, Double?, String, String)

    private static func detection(_ row: DetectionRow) -> StoredDetection {
        StoredDetection(
            sequence: row.0,
            messageID: row.1,
            cameraID: row.2,
            checkpointID: row.3,
            capturedAt: row.4,
            receivedAt: row.5,
            confidence: row.6,
            plates: row.7.isEmpty ? [] : row.7.split(separator: "\n", omittingEmptySubsequences: false).map(String.init),
            payload: row.8
        )
    }

    private func fetchDetections(_ query: PostgresQuery) async throws -> [StoredDetection] {
        var result: [StoredDetection] = []
        for try await row in try await client.query(query, logger: logger).decode(DetectionRow.self) {
            result.append(Self.detection(row))
        }
        return result
    }

    public func detection(messageID: String) async throws -> StoredDetection? {
        try await fetchDetections("SELECT \(unescaped: Self.detectionColumns) FROM detection d WHERE d.message_id = \(messageID)").first
    }

    public func detections(matching query: DetectionQuery) async throws -> DetectionPage {
        let limit = max(1, min(query.limit, 1000))
        var sql = PostgresQuery.StringInterpolation(literalCapacity: 256, interpolationCount: 8)
        var order = "d.sequence"
        sql.appendLiteral("SELECT ")
        if query.plate != nil {
            order = "p.sequence"
            sql.appendLiteral(
                "DISTINCT ON (p.sequence) \(Self.detectionColumns) FROM detection_plate p JOIN detection d ON d.sequence = p.sequence WHERE "
            )
            switch query.plate! {
            case .exact(let text):
                sql.appendLiteral("p.normalized = ")
                sql.appendInterpolation(PlateNormalizer.normalize(text))
            case .prefix(let text):
                let normalized = PlateNormalizer.normalize(text)
                sql.appendLiteral("p.normalized >= ")
                sql.appendInterpolation(normalized)
                sql.appendLiteral(" AND p.normalized < ")
                sql.appendInterpolation(normalized + "\u{10FFFF}")
            case .fuzzy(let text, let distance):
                let folded = PlateNormalizer.fold(text)
                if distance <= 0 {
                    sql.appendLiteral("p.folded = ")
                    sql.appendInterpolation(folded)
                } else {
                    sql.appendLiteral("p.folded = ANY(")
                    sql.appendInterpolation(Array(PlateNormalizer.neighbourhood(ofFolded: folded)))
                    sql.appendLiteral(")")
                }
            }
        } else {
            sql.appendLiteral("\(Self.detectionColumns) FROM detection d WHERE true")
        }
        if let camera = query.camera {
            sql.appendLiteral(" AND d.camera_id = ")
            sql.appendInterpolation(camera)
        }
        if let checkpoint = query.checkpoint {
            sql.appendLiteral(" AND d.checkpoint_id = ")
            sql.appendInterpolation(checkpoint)
        }
        if let since = query.since {
            sql.appendLiteral(" AND d.captured_at >= ")
            sql.appendInterpolation(since)
        }
        if let until = query.until {
            sql.appendLiteral(" AND d.captured_at < ")
            sql.appendInterpolation(until)
        }
        if let before = query.before {
            sql.appendLiteral(" AND \(order) < ")
            sql.appendInterpolation(before)
        }
        sql.appendLiteral(" ORDER BY \(order) DESC LIMIT ")
        sql.appendInterpolation(limit + 1)
        var items = try await fetchDetections(PostgresQuery(stringInterpolation: sql))
        if case .fuzzy(let text, let distance)? = query.plate, distance > 1 {
            items = SQLiteLPRRepository.filterFuzzy(items, text: text, distance: distance)
        }
        let hasMore = items.count > limit
        if hasMore { items.removeLast(items.count - limit) }
        return DetectionPage(items: items, nextBefore: hasMore ? items.last?.sequence : nil)
    }

    public func purgeDetections(receivedBefore olderThan: Date?, keepingNewest keep: Int?, limit: Int) async throws -> Int {
        var cutoff: Int64 = 0
        if let olderThan {
            for try await value in try await client.query(
                "SELECT max(sequence) FROM detection WHERE received_at < \(olderThan)",
                logger: logger
            ).decode(Int64?.self) {
                cutoff = max(cutoff, value ?? 0)
            }
        }
        if let keep, keep >= 0 {
            for try await value in try await client.query(
                "SELECT sequence FROM detection ORDER BY sequence DESC LIMIT 1 OFFSET \(keep)",
                logger: logger
            ).decode(Int64.self) {
                cutoff = max(cutoff, value)
            }
        }
        guard cutoff > 0 else { return 0 }
        var deleted = 0
        for try await _ in try await client.query(
            """
            DELETE FROM detection WHERE sequence IN (SELECT sequence FROM detection WHERE sequence <= \(cutoff) ORDER BY sequence LIMIT \(limit))
            RETURNING sequence
            """,
            logger: logger
        ).decode(Int64.self) {
            deleted += 1
        }
        return deleted
    }

    public func hourlyCounts(since: Date, until: Date, camera: String?) async throws -> [HourlyCount] {
        let rows = try await client.query(
            """
            SELECT date_trunc('hour', received_at), camera_id, count(*)::int8 FROM detection
            WHERE received_at >= \(since) AND received_at < \(until) AND (\(camera)::text IS NULL OR camera_id = \(camera))
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            logger: logger
        )
        var result: [HourlyCount] = []
        for try await (hour, cameraID, count) in rows.decode((Date, String, Int64).self) {
            result.append(HourlyCount(hour: hour, cameraID: cameraID, count: Int(count)))
        }
        return result
    }

    public func checkpointFigures(since: Date) async throws -> [CheckpointFigures] {
        var hits: [String: Int] = [:]
        for try await (checkpoint, count) in try await client.query(
            "SELECT checkpoint_id, count(*)::int8 FROM alert WHERE kind = 'watchlist_hit' AND timestamp >= \(since) GROUP BY 1",
            logger: logger
        ).decode((String?, Int64).self) {
            if let checkpoint { hits[checkpoint] = Int(count) }
        }
        var result: [CheckpointFigures] = []
        for try await (checkpoint, detections, unique, mean) in try await client.query(
            """
            SELECT d.checkpoint_id, count(DISTINCT d.sequence)::int8, count(DISTINCT p.normalized)::int8, avg(d.confidence)
            FROM detection d LEFT JOIN detection_plate p ON p.sequence = d.sequence
            WHERE d.received_at >= \(since) GROUP BY 1 ORDER BY 1
            """,
            logger: logger
        ).decode((String, Int64, Int64, Double?).self) {
            result.append(
                CheckpointFigures(
                    checkpointID: checkpoint,
                    detections: Int(detections),
                    uniquePlates: Int(unique),
                    meanConfidence: mean,
                    watchlistHits: hits[checkpoint] ?? 0
                )
            )
        }
        return result
    }

    public func detectionCount() async throws -> Int {
        var count = 0
        for try await value in try await client.query("SELECT count(*)::int8 FROM detection", logger: logger).decode(Int64.self) {
            count = Int(value)
        }
        return count
    }

    // MARK: Cameras

    private static let cameraColumns = """
        camera_id, checkpoint_id, online, first_seen, last_seen, last_health_at, health, health_status, active_problems,
        desired_config, desired_at, reported_config, reported_at, last_detection_at, last_detection_id
        """

    private typealias CameraRow = (
        String, String?, Bool?, Date?, Date?, Date?, String?, String?, String, String?, Date?, String?, Date?, Date?, String?
    )

    private static func camera(_ row: CameraRow) -> CameraRecord {
        var record = CameraRecord(cameraID: row.0)
        record.checkpointID = row.1
        record.online = row.2
        record.firstSeen = row.3
        record.lastSeen = row.4
        record.lastHealthAt = row.5
        record.health = row.6
        record.healthStatus = row.7
        record.activeProblems = row.8.isEmpty ? [] : row.8.split(separator: ",").map(String.init)
        record.desiredConfig = row.9
        record.desiredAt = row.10
        record.reportedConfig = row.11
        record.reportedAt = row.12
        record.lastDetectionAt = row.13
        record.lastDetectionID = row.14
        return record
    }

    public func camera(_ id: String) async throws -> CameraRecord? {
        var result: CameraRecord?
        for try await row in try await client.query(
            "SELECT \(unescaped: Self.cameraColumns) FROM camera WHERE camera_id = \(id) AND (first_seen IS NOT NULL OR desired_config IS NOT NULL)",
            logger: logger
        ).decode(CameraRow.self) {
            result = Self.camera(row)
        }
        return result
    }

    public func cameras() async throws -> [CameraRecord] {
        var result: [CameraRecord] = []
        for try await row in try await client.query(
            "SELECT \(unescaped: Self.cameraColumns) FROM camera WHERE first_seen IS NOT NULL OR desired_config IS NOT NULL ORDER BY camera_id",
            logger: logger
        ).decode(CameraRow.self) {
            result.append(Self.camera(row))
        }
        return result
    }

    public func updateCamera<Result: Sendable>(_ id: String, _ change: @Sendable (inout CameraRecord) -> Result) async throws -> Result {
        try await client.withTransaction(logger: logger) { connection in
            // The row exists before it is locked, so two servers meeting a new camera take turns.
            try await connection.query("INSERT INTO camera (camera_id) VALUES (\(id)) ON CONFLICT DO NOTHING", logger: logger)
            var record = CameraRecord(cameraID: id)
            for try await row in try await connection.query(
                "SELECT \(unescaped: Self.cameraColumns) FROM camera WHERE camera_id = \(id) FOR UPDATE",
                logger: logger
            ).decode(CameraRow.self) {
                record = Self.camera(row)
            }
            let before = record
            let result = change(&record)
            guard record != before else { return result }
            try await connection.query(
                """
                UPDATE camera SET checkpoint_id = \(record.checkpointID), online = \(record.online), first_seen = \(record.firstSeen),
                    last_seen = \(record.lastSeen), last_health_at = \(record.lastHealthAt), health = \(record.health),
                    health_status = \(record.healthStatus), active_problems = \(record.activeProblems.joined(separator: ",")),
                    desired_config = \(record.desiredConfig), desired_at = \(record.desiredAt), reported_config = \(record.reportedConfig),
                    reported_at = \(record.reportedAt), last_detection_at = \(record.lastDetectionAt), last_detection_id = \(record.lastDetectionID)
                WHERE camera_id = \(id)
                """,
                logger: logger
            )
            return result
        }
    }

    public func appendHealth(_ record: HealthRecord) async throws {
        try await client.query(
            "INSERT INTO health_history (camera_id, received_at, status, payload) VALUES (\(record.cameraID), \(record.receivedAt), \(record.status), \(record.payload))",
            logger: logger
        )
    }

    public func healthHistory(camera: String, limit: Int) async throws -> [HealthRecord] {
        var result: [HealthRecord] = []
        for try await (cameraID, received, status, payload) in try await client.query(
            "SELECT camera_id, received_at, status, payload FROM health_history WHERE camera_id = \(camera) ORDER BY id DESC LIMIT \(limit)",
            logger: logger
        ).decode((String, Date, String, String).self) {
            result.append(HealthRecord(cameraID: cameraID, receivedAt: received, status: status, payload: payload))
        }
        return result
    }

    // MARK: Watch-list

    public func watchlist() async throws -> (version: Int, entries: [WatchlistEntry]) {
        var version = 0
        for try await value in try await client.query("SELECT value FROM setting WHERE key = 'watchlist_version'", logger: logger).decode(Int64.self)
        {
            version = Int(value)
        }
        var entries: [WatchlistEntry] = []
        for try await payload in try await client.query("SELECT payload FROM watchlist_entry ORDER BY position", logger: logger).decode(String.self) {
            if let json = try? JSONObject.parse(Array(payload.utf8)), let entry = try? WatchlistEntry(validating: json) { entries.append(entry) }
        }
        return (version, entries)
    }

    private static func bumpWatchlistVersion(_ connection: PostgresConnection, logger: Logger) async throws -> Int {
        var version = 1
        for try await value in try await connection.query(
            """
            INSERT INTO setting (key, value) VALUES ('watchlist_version', 1)
            ON CONFLICT (key) DO UPDATE SET value = setting.value + 1 RETURNING value
            """,
            logger: logger
        ).decode(Int64.self) {
            version = Int(value)
        }
        return version
    }

    public func saveWatchlistEntry(_ entry: WatchlistEntry) async throws -> Int {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query(
                """
                INSERT INTO watchlist_entry (id, payload) VALUES (\(entry.id), \(JSONValue.object(entry.json).jsonText))
                ON CONFLICT (id) DO UPDATE SET payload = excluded.payload
                """,
                logger: logger
            )
            return try await Self.bumpWatchlistVersion(connection, logger: logger)
        }
    }

    public func deleteWatchlistEntry(id: String) async throws -> Int? {
        try await client.withTransaction(logger: logger) { connection in
            var deleted = false
            for try await _ in try await connection.query("DELETE FROM watchlist_entry WHERE id = \(id) RETURNING id", logger: logger).decode(
                String.self
            ) {
                deleted = true
            }
            guard deleted else { return nil }
            return try await Self.bumpWatchlistVersion(connection, logger: logger)
        }
    }

    // MARK: Alerts

    static func insertAlerts(_ alerts: [Alert], connection: PostgresConnection, logger: Logger) async throws {
        for alert in alerts {
            try await connection.query(
                """
                INSERT INTO alert (alert_id, level, kind, camera_id, checkpoint_id, message, timestamp, payload)
                VALUES (\(alert.alertID), \(alert.level.rawValue), \(alert.kind.rawValue), \(alert.cameraID),
                        \(alert.details["checkpoint_id"]?.stringValue), \(alert.message), \(alert.timestamp), \(JSONValue.object(alert.json).jsonText))
                ON CONFLICT (alert_id) DO NOTHING
                """,
                logger: logger
            )
        }
    }

    public func purgeHistory(before olderThan: Date, limit: Int) async throws -> Int {
        // Rows are appended in time order: the oldest are the first ids.
        let health = try await rowCount(
            """
            DELETE FROM health_history WHERE id IN (SELECT id FROM health_history WHERE received_at < \(olderThan) ORDER BY id LIMIT \(limit))
            RETURNING 1
            """
        )
        let alerts = try await rowCount(
            """
            DELETE FROM alert WHERE sequence IN (SELECT sequence FROM alert WHERE timestamp < \(olderThan) ORDER BY timestamp LIMIT \(limit))
            RETURNING 1
            """
        )
        let commands = try await rowCount(
            "DELETE FROM command WHERE message_id IN (SELECT message_id FROM command WHERE sent_at < \(olderThan) LIMIT \(limit)) RETURNING 1"
        )
        return health + alerts + commands
    }

    /// How many rows `query` returns (a DELETE ... RETURNING: how many it deleted).
    private func rowCount(_ query: PostgresQuery) async throws -> Int {
        var count = 0
        for try await _ in try await client.query(query, logger: logger) { count += 1 }
        return count
    }

    public func insertAlerts(_ alerts: [Alert]) async throws {
        guard !alerts.isEmpty else { return }
        try await client.withConnection { connection in try await Self.insertAlerts(alerts, connection: connection, logger: logger) }
    }

    public func alerts(since: Date?, level: Alert.Level?, limit: Int) async throws -> [Alert] {
        let levels = Alert.Level.allCases.filter { level == nil || $0 >= level! }.map(\.rawValue)
        var result: [Alert] = []
        for try await payload in try await client.query(
            """
            SELECT payload FROM alert WHERE (\(since)::timestamptz IS NULL OR timestamp >= \(since)) AND level = ANY(\(levels))
            ORDER BY sequence DESC LIMIT \(limit)
            """,
            logger: logger
        ).decode(String.self) {
            if let json = try? JSONObject.parse(Array(payload.utf8)), let alert = try? Alert(validating: json) { result.append(alert) }
        }
        return result
    }

    // MARK: Commands

    public func recordCommand(_ command: ControlCommand, sentAt: Date) async throws {
        try await client.query(
            """
            INSERT INTO command (message_id, camera_id, command, payload, sent_at, status)
            VALUES (\(command.messageID), \(command.cameraID), \(command.command), \(JSONValue.object(command.json).jsonText), \(sentAt), 'pending')
            ON CONFLICT (message_id) DO NOTHING
            """,
            logger: logger
        )
    }

    public func recordCommandOutcome(messageID: String, status: String, response: JSONObject?, at: Date) async throws {
        try await client.query(
            """
            UPDATE command SET status = \(status), response = \(response.map { JSONValue.object($0).jsonText }), answered_at = \(at)
            WHERE message_id = \(messageID) AND status IN ('pending', 'timeout')
            """,
            logger: logger
        )
    }

    public func command(messageID: String) async throws -> CommandRecord? {
        var result: CommandRecord?
        for try await (id, camera, command, sent, status, response, answered) in try await client.query(
            "SELECT message_id, camera_id, command, sent_at, status, response, answered_at FROM command WHERE message_id = \(messageID)",
            logger: logger
        ).decode((String, String, String, Date, String, String?, Date?).self) {
            result = CommandRecord(
                messageID: id,
                cameraID: camera,
                command: command,
                sentAt: sent,
                status: status,
                response: response,
                answeredAt: answered
            )
        }
        return result
    }

    // MARK: Leases

    public func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool {
        var acquired = false
        for try await _ in try await client.query(
            """
            INSERT INTO lease (name, holder, expires_at) VALUES (\(name), \(holder), \(until))
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
            WHERE lease.holder = excluded.holder OR lease.expires_at < \(now)
            RETURNING name
            """,
            logger: logger
        ).decode(String.self) {
            acquired = true
        }
        return acquired
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await client.query("DELETE FROM lease WHERE name = \(name) AND holder = \(holder)", logger: logger)
    }
}

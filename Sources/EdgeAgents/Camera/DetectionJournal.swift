import Foundation
import GRDB

/// Every detection the camera agent has taken and the server has not yet acknowledged, in a
/// SQLite file (GRDB, WAL), so that a killed agent still delivers them after it restarts. A
/// detection leaves the journal when the server acknowledges it (`stored` or `duplicate`);
/// a `rejected` one moves to a table of its own, kept for whoever looks into it.
///
/// The MQTT outbox keeps a message until the broker has it; the journal keeps it until the
/// server has stored it. Writes take many detections per transaction.
public final class DetectionJournal: Sendable {
    /// A detection as the journal keeps it.
    public struct Record: Sendable, Hashable {
        public var messageID: String
        /// The detection's JSON, as published.
        public var payload: [UInt8]
        /// Whether it went into the MQTT outbox (false: it waits in the backlog).
        public var outboxed: Bool
        /// The file it came from (`--watch`), removed once acknowledged.
        public var source: String?

        public init(messageID: String, payload: [UInt8], outboxed: Bool, source: String? = nil) {
            self.messageID = messageID
            self.payload = payload
            self.outboxed = outboxed
            self.source = source
        }
    }

    /// A detection the server rejected.
    public struct Rejection: Sendable, Hashable {
        public var messageID: String
        public var payload: [UInt8]
        /// The ack's errors, as JSON.
        public var errors: String
        public var rejectedAt: Date
        public var source: String?
    }

    private let database: DatabaseQueue

    /// Opens (or creates) the journal at `path`; its folder must exist.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.label = "databus.camera.journal"
        configuration.prepareDatabase { database in
            // A process crash (SIGKILL) loses nothing committed; a power loss may lose the last moments.
            try database.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        database = try DatabaseQueue(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    /// Append-only migrations; names never change.
    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("create detections") { database in
            try database.create(table: "detections") { table in
                table.autoIncrementedPrimaryKey("position")
                table.column("messageID", .text).notNull().unique()
                table.column("payload", .blob).notNull()
                // 0 in the backlog, 1 handed to the MQTT outbox.
                table.column("outboxed", .integer).notNull()
                table.column("source", .text)
                table.column("createdAt", .double).notNull()
            }
            try database.create(table: "rejected") { table in
                table.primaryKey("messageID", .text)
                table.column("payload", .blob).notNull()
                table.column("errors", .text).notNull()
                table.column("rejectedAt", .double).notNull()
                table.column("source", .text)
            }
        }
        return migrator
    }

    /// Adds detections in one transaction; one already journaled (the same `message_id`) is
    /// left as it is. Returns the ids that were new.
    @discardableResult
    public func insert(_ records: [Record], at time: Date = Date()) async throws -> Set<String> {
        guard !records.isEmpty else { return [] }
        return try await database.write { database in
            var added: Set<String> = []
            let statement = try database.cachedStatement(
                sql: "INSERT OR IGNORE INTO detections (messageID, payload, outboxed, source, createdAt) VALUES (?, ?, ?, ?, ?)"
            )
            for record in records {
                try statement.execute(arguments: [
                    record.messageID, Data(record.payload), record.outboxed ? 1 : 0, record.source, time.timeIntervalSince1970,
                ])
                if database.changesCount > 0 { added.insert(record.messageID) }
            }
            return added
        }
    }

    /// Records that these backlog detections went into the outbox.
    public func markOutboxed(_ messageIDs: [String]) async throws {
        guard !messageIDs.isEmpty else { return }
        try await database.write { database in
            let statement = try database.cachedStatement(sql: "UPDATE detections SET outboxed = 1 WHERE messageID = ?")
            for id in messageIDs { try statement.execute(arguments: [id]) }
        }
    }

    /// The payloads of these detections (those still journaled).
    public func payloads(_ messageIDs: [String]) async throws -> [String: [UInt8]] {
        guard !messageIDs.isEmpty else { return [:] }
        return try await database.read { database in
            var payloads: [String: [UInt8]] = [:]
            let statement = try database.cachedStatement(sql: "SELECT payload FROM detections WHERE messageID = ?")
            for id in messageIDs {
                if let data = try Data.fetchOne(statement, arguments: [id]) { payloads[id] = Array(data) }
            }
            return payloads
        }
    }

    /// Removes acknowledged detections; returns the source files of those that had one.
    @discardableResult
    public func complete(_ messageIDs: [String]) async throws -> [String] {
        guard !messageIDs.isEmpty else { return [] }
        return try await database.write { database in
            var sources: [String] = []
            let select = try database.cachedStatement(sql: "SELECT source FROM detections WHERE messageID = ?")
            let delete = try database.cachedStatement(sql: "DELETE FROM detections WHERE messageID = ?")
            for id in messageIDs {
                if let source = try String?.fetchOne(select, arguments: [id]) ?? nil { sources.append(source) }
                try delete.execute(arguments: [id])
            }
            return sources
        }
    }

    /// Moves a rejected detection to the rejected table; returns its source file, if any.
    @discardableResult
    public func reject(_ messageID: String, errors: String, at time: Date = Date()) async throws -> String? {
        try await database.write { database in
            guard let row = try Row.fetchOne(database, sql: "SELECT payload, source FROM detections WHERE messageID = ?", arguments: [messageID])
            else {
                return nil
            }
            let payload: Data = row["payload"]
            let source: String? = row["source"]
            try database.execute(
                sql: "INSERT OR REPLACE INTO rejected (messageID, payload, errors, rejectedAt, source) VALUES (?, ?, ?, ?, ?)",
                arguments: [messageID, payload, errors, time.timeIntervalSince1970, source]
            )
            try database.execute(sql: "DELETE FROM detections WHERE messageID = ?", arguments: [messageID])
            return source
        }
    }

    /// The detections not yet acknowledged, oldest first, split by where they were.
    public func pending() async throws -> (outboxed: [String], backlog: [String]) {
        try await database.read { database in
            var outboxed: [String] = []
            var backlog: [String] = []
            let rows = try Row.fetchCursor(database, sql: "SELECT messageID, outboxed FROM detections ORDER BY position")
            while let row = try rows.next() {
                if (row["outboxed"] as Int) != 0 { outboxed.append(row["messageID"]) } else { backlog.append(row["messageID"]) }
            }
            return (outboxed, backlog)
        }
    }

    /// The source files of detections not yet acknowledged.
    public func pendingSources() async throws -> Set<String> {
        try await database.read { database in
            Set(try String.fetchAll(database, sql: "SELECT source FROM detections WHERE source IS NOT NULL"))
        }
    }

    /// How many detections wait for the server's ack.
    public func pendingCount() async throws -> Int {
        try await database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM detections") ?? 0 }
    }

    /// The detections the server rejected, newest first.
    public func rejections(limit: Int = 100) async throws -> [Rejection] {
        try await database.read { database in
            try Row.fetchAll(
                database,
                sql: "SELECT messageID, payload, errors, rejectedAt, source FROM rejected ORDER BY rejectedAt DESC LIMIT ?",
                arguments: [limit]
            ).map { row in
                Rejection(
                    messageID: row["messageID"],
                    payload: Array(row["payload"] as Data),
                    errors: row["errors"],
                    rejectedAt: Date(timeIntervalSince1970: row["rejectedAt"]),
                    source: row["source"]
                )
            }
        }
    }
}

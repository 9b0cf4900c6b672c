import Foundation
import GRDB
import GRDBSQLite
import MQTTCore
import NIOCore

/// Keeps the outbox in a SQLite file (GRDB, WAL), so that a process killed with unsent or
/// unacknowledged messages sends them after it restarts.
///
/// ```swift
/// configuration.outbox = OutboxConfiguration(persistence: try SQLiteOutboxPersistence(path: "/var/lib/camera/outbox.sqlite"))
/// ```
///
/// The client hands changes over many at a time (``apply(_:)``, one transaction each: group
/// commit); `enqueue`/`publish` return once the transaction holding their message has
/// committed. Acknowledged messages are deleted by ranges of sequence numbers. One client at
/// a time may use a file.
public final class SQLiteOutboxPersistence: OutboxPersistence {
    /// What a committed message survives.
    public enum Durability: Sendable, Hashable {
        /// A crash or kill of the process (WAL, `synchronous = NORMAL`); the default.
        case processCrash
        /// Also a power loss or kernel crash (`synchronous = FULL`): an fsync per transaction.
        case powerLoss
    }

    private let database: DatabaseQueue

    /// Opens (or creates) the outbox file.
    ///
    /// - Parameters:
    ///   - path: the SQLite file; its folder must exist.
    ///   - durability: what a stored message survives; a process crash by default.
    public init(path: String, durability: Durability = .processCrash) throws {
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.label = "databus.mqtt-client.outbox"
        let synchronous = durability == .powerLoss ? "FULL" : "NORMAL"
        configuration.prepareDatabase { database in
            try database.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        database = try DatabaseQueue(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    /// Append-only migrations; names never change.
    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("create outbox") { database in
            try database.create(table: "outbox") { table in
                table.primaryKey("sequence", .integer)
                // The message as an MQTT 5 PUBLISH packet: topic, payload, QoS, retain, properties.
                table.column("publish", .blob).notNull()
                // 0 queued, 1 published, 2 released (QoS 2 after PUBREC).
                table.column("state", .integer).notNull()
                table.column("packetIdentifier", .integer)
                table.column("reasonCode", .integer)
            }
        }
        migrator.registerMigration("outbox byte counts") { database in
            // Topic plus payload, what the outbox's byte limit counts; rows from before hold NULL.
            try database.alter(table: "outbox") { table in table.add(column: "bytes", .integer) }
        }
        return migrator
    }

    public func loadEntries() throws -> [OutboxEntry] {
        try loadEntries(after: 0, limit: -1)
    }

    /// Reads entries in order with the statement's columns taken by position (a refill of a
    /// long backlog reads thousands at a time).
    public func loadEntries(after sequence: UInt64, limit: Int) throws -> [OutboxEntry] {
        try database.read { database in
            let select = try database.cachedStatement(
                sql: "SELECT sequence, publish, state, packetIdentifier, reasonCode FROM outbox WHERE sequence > ? ORDER BY sequence LIMIT ?"
            )
            let statement = select.sqliteStatement
            sqlite3_reset(statement)
            defer { sqlite3_reset(statement) }
            sqlite3_bind_int64(statement, 1, Int64(bitPattern: sequence))
            sqlite3_bind_int64(statement, 2, Int64(limit))
            var entries: [OutboxEntry] = []
            if limit > 0 { entries.reserveCapacity(limit) }
            while true {
                let code = sqlite3_step(statement)
                if code == SQLITE_DONE { break }
                guard code == SQLITE_ROW else {
                    throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(database.sqliteConnection)))
                }
                entries.append(try Self.entry(from: statement))
            }
            return entries
        }
    }

    public func loadTotals() throws -> OutboxTotals {
        try database.read { database in
            let row = try Row.fetchOne(
                database,
                sql: "SELECT COUNT(*), COALESCE(SUM(COALESCE(bytes, length(publish))), 0), COALESCE(MAX(sequence), 0) FROM outbox"
            )
            return OutboxTotals(
                messages: row?[0] ?? 0,
                bytes: row?[1] ?? 0,
                lastSequence: UInt64(bitPattern: row?[2] ?? Int64(0))
            )
        }
    }

    public func append(_ entry: OutboxEntry) throws {
        var changes = OutboxChanges()
        changes.append(entry)
        try apply(changes)
    }

    public func update(_ entry: OutboxEntry) throws {
        var changes = OutboxChanges()
        changes.update(entry)
        try apply(changes)
    }

    public func remove(sequence: UInt64) throws {
        var changes = OutboxChanges()
        changes.remove(sequence)
        try apply(changes)
    }

    /// Stores the changes in one transaction: inserts, state changes, then deletes by range.
    public func apply(_ changes: OutboxChanges) throws {
        guard !changes.isEmpty else { return }
        try database.write { database in
            if !changes.appended.isEmpty {
                let insert = try database.cachedStatement(
                    sql: "INSERT INTO outbox (sequence, publish, state, packetIdentifier, reasonCode, bytes) VALUES (?, ?, ?, ?, ?, ?)"
                )
                var buffer = ByteBuffer()
                for entry in changes.appended {
                    buffer.clear()
                    try Self.encode(entry, into: &buffer)
                    let (state, identifier, reasonCode) = Self.columns(entry.state)
                    let statement = insert.sqliteStatement
                    sqlite3_reset(statement)
                    sqlite3_bind_int64(statement, 1, Int64(bitPattern: entry.sequence))
                    buffer.withUnsafeReadableBytes { bytes in
                        _ = sqlite3_bind_blob(statement, 2, bytes.baseAddress, Int32(bytes.count), Self.transient)
                    }
                    sqlite3_bind_int64(statement, 3, Int64(state))
                    if let identifier { sqlite3_bind_int64(statement, 4, Int64(identifier)) } else { sqlite3_bind_null(statement, 4) }
                    if let reasonCode { sqlite3_bind_int64(statement, 5, Int64(reasonCode)) } else { sqlite3_bind_null(statement, 5) }
                    sqlite3_bind_int64(statement, 6, Int64(entry.byteCount))
                    try Self.step(statement, database)
                }
            }
            if !changes.updated.isEmpty {
                let update = try database.cachedStatement(sql: "UPDATE outbox SET state = ?, packetIdentifier = ?, reasonCode = ? WHERE sequence = ?")
                let statement = update.sqliteStatement
                for entry in changes.updated {
                    let (state, identifier, reasonCode) = Self.columns(entry.state)
                    sqlite3_reset(statement)
                    sqlite3_bind_int64(statement, 1, Int64(state))
                    if let identifier { sqlite3_bind_int64(statement, 2, Int64(identifier)) } else { sqlite3_bind_null(statement, 2) }
                    if let reasonCode { sqlite3_bind_int64(statement, 3, Int64(reasonCode)) } else { sqlite3_bind_null(statement, 3) }
                    sqlite3_bind_int64(statement, 4, Int64(bitPattern: entry.sequence))
                    try Self.step(statement, database)
                }
            }
            if !changes.removed.isEmpty {
                let delete = try database.cachedStatement(sql: "DELETE FROM outbox WHERE sequence BETWEEN ? AND ?")
                for range in changes.removed {
                    let statement = delete.sqliteStatement
                    sqlite3_reset(statement)
                    sqlite3_bind_int64(statement, 1, Int64(bitPattern: range.lowerBound))
                    sqlite3_bind_int64(statement, 2, Int64(bitPattern: range.upperBound))
                    try Self.step(statement, database)
                }
            }
        }
    }

    // MARK: Rows

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    private static let allocator = ByteBufferAllocator()

    private static func step(_ statement: SQLiteStatement, _ database: Database) throws {
        let code = sqlite3_step(statement)
        sqlite3_reset(statement)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(database.sqliteConnection)))
        }
    }

    private static func columns(_ state: OutboxEntry.State) -> (state: Int, packetIdentifier: Int?, reasonCode: Int?) {
        switch state {
        case .queued: (0, nil, nil)
        case .published(let identifier): (1, Int(identifier), nil)
        case .released(let identifier, let reasonCode): (2, Int(identifier), Int(reasonCode.rawValue))
        }
    }

    private static func encode(_ entry: OutboxEntry, into buffer: inout ByteBuffer) throws {
        let packet = PublishPacket(
            topicName: entry.topic,
            payload: entry.payload,
            qos: entry.qos,
            retain: entry.retain,
            packetIdentifier: entry.qos == .atMostOnce ? nil : 1,
            properties: entry.properties
        )
        try MQTTPacket.publish(packet).write(to: &buffer, version: .v5)
    }

    /// The entry in the current row of `statement` (columns: sequence, publish, state, packetIdentifier, reasonCode).
    private static func entry(from statement: SQLiteStatement) throws -> OutboxEntry {
        let sequence = UInt64(bitPattern: sqlite3_column_int64(statement, 0))
        let count = Int(sqlite3_column_bytes(statement, 1))
        var buffer = allocator.buffer(capacity: count)
        if let bytes = sqlite3_column_blob(statement, 1) {
            buffer.writeBytes(UnsafeRawBufferPointer(start: bytes, count: count))
        }
        let packet: MQTTPacket?
        do {
            packet = try MQTTPacket.read(from: &buffer, version: .v5)
        } catch {
            throw MQTTClientError(.persistenceFailed, "outbox entry \(sequence) is not a valid PUBLISH packet: \(error)")
        }
        guard case .publish(let packet)? = packet else {
            throw MQTTClientError(.persistenceFailed, "outbox entry \(sequence) is not a PUBLISH packet")
        }
        func optionalInteger(_ column: Int32) -> Int64? {
            sqlite3_column_type(statement, column) == SQLITE_NULL ? nil : sqlite3_column_int64(statement, column)
        }
        let identifier = optionalInteger(3).map { UInt16(truncatingIfNeeded: $0) }
        let state: OutboxEntry.State
        switch (sqlite3_column_int64(statement, 2), identifier) {
        case (1, let identifier?):
            state = .published(packetIdentifier: identifier)
        case (2, let identifier?):
            let code = optionalInteger(4).flatMap { ReasonCode(rawValue: UInt8(truncatingIfNeeded: $0)) } ?? .success
            state = .released(packetIdentifier: identifier, reasonCode: code)
        default:
            state = .queued
        }
        return OutboxEntry(
            sequence: sequence,
            topic: packet.topicName,
            payload: packet.payload,
            qos: packet.qos,
            retain: packet.retain,
            properties: packet.properties,
            state: state
        )
    }
}

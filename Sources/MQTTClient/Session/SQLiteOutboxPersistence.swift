import Foundation
import GRDB
import MQTTCore
import NIOCore

/// Keeps the outbox in a SQLite file (GRDB), so that a process killed with unsent or
/// unacknowledged messages sends them after it restarts.
///
/// ```swift
/// configuration.outbox = OutboxConfiguration(persistence: try SQLiteOutboxPersistence(path: "/var/lib/camera/outbox.sqlite"))
/// ```
///
/// Each entry is written in its own transaction before `publish` accepts the message, and
/// changed or deleted as its flow moves on. One client at a time may use a file.
public final class SQLiteOutboxPersistence: OutboxPersistence {
    /// What a committed message survives.
    public enum Durability: Sendable, Hashable {
        /// A crash or kill of the process (WAL, `synchronous = NORMAL`); the default.
        case processCrash
        /// Also a power loss or kernel crash (`synchronous = FULL`): an fsync per change.
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
        return migrator
    }

    public func loadEntries() throws -> [OutboxEntry] {
        try database.read { database in
            try Row.fetchAll(database, sql: "SELECT sequence, publish, state, packetIdentifier, reasonCode FROM outbox ORDER BY sequence")
                .map(Self.entry(from:))
        }
    }

    public func append(_ entry: OutboxEntry) throws {
        let publish = try Self.encode(entry)
        let (state, identifier, reasonCode) = Self.columns(entry.state)
        try database.write { database in
            try database.execute(
                sql: "INSERT INTO outbox (sequence, publish, state, packetIdentifier, reasonCode) VALUES (?, ?, ?, ?, ?)",
                arguments: [Int64(bitPattern: entry.sequence), publish, state, identifier, reasonCode]
            )
        }
    }

    public func update(_ entry: OutboxEntry) throws {
        let (state, identifier, reasonCode) = Self.columns(entry.state)
        try database.write { database in
            try database.execute(
                sql: "UPDATE outbox SET state = ?, packetIdentifier = ?, reasonCode = ? WHERE sequence = ?",
                arguments: [state, identifier, reasonCode, Int64(bitPattern: entry.sequence)]
            )
        }
    }

    public func remove(sequence: UInt64) throws {
        try database.write { database in
            try database.execute(sql: "DELETE FROM outbox WHERE sequence = ?", arguments: [Int64(bitPattern: sequence)])
        }
    }

    // MARK: Rows

    private static func columns(_ state: OutboxEntry.State) -> (state: Int, packetIdentifier: Int?, reasonCode: Int?) {
        switch state {
        case .queued: (0, nil, nil)
        case .published(let identifier): (1, Int(identifier), nil)
        case .released(let identifier, let reasonCode): (2, Int(identifier), Int(reasonCode.rawValue))
        }
    }

    private static func encode(_ entry: OutboxEntry) throws -> Data {
        let packet = PublishPacket(
            topicName: entry.topic,
            payload: entry.payload,
            qos: entry.qos,
            retain: entry.retain,
            packetIdentifier: entry.qos == .atMostOnce ? nil : 1,
            properties: entry.properties
        )
        var buffer = ByteBuffer()
        try MQTTPacket.publish(packet).write(to: &buffer, version: .v5)
        return Data(buffer.readableBytesView)
    }

    private static func entry(from row: Row) throws -> OutboxEntry {
        let sequence = UInt64(bitPattern: row["sequence"] as Int64)
        let data: Data = row["publish"]
        var buffer = ByteBuffer(bytes: data)
        guard case .publish(let packet)? = try MQTTPacket.read(from: &buffer, version: .v5) else {
            throw MQTTClientError(.persistenceFailed, "outbox entry \(sequence) is not a PUBLISH packet")
        }
        let identifier = (row["packetIdentifier"] as Int?).map { UInt16(truncatingIfNeeded: $0) }
        let state: OutboxEntry.State
        switch (row["state"] as Int, identifier) {
        case (1, let identifier?):
            state = .published(packetIdentifier: identifier)
        case (2, let identifier?):
            let code = (row["reasonCode"] as Int?).flatMap { ReasonCode(rawValue: UInt8(truncatingIfNeeded: $0)) } ?? .success
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

import Dispatch
import Foundation
import GRDB
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// The broker's durable state in one SQLite file (WAL, `synchronous = FULL`).
///
/// Writes are group-committed: operations from every event loop collect while the single
/// writer commits the previous batch, then go in one transaction; each caller's completion
/// runs once its batch is on disk. A QoS 1/2 message is acknowledged only from there.
final class SQLiteBrokerStore: Sendable {
    private let database: DatabaseQueue
    private let path: String
    private let logger: Logger
    private let writer = DispatchQueue(label: "databus.broker.store")
    private let pending = NIOLockedValueBox<Batch>(Batch())
    private let writeLatency: DurationHistogram?

    private struct Batch {
        var operations: [StoreOperation] = []
        var completions: [@Sendable (Result<Void, any Error>) -> Void] = []
        var writing = false
    }

    /// Opens (or creates) `broker.db` in `folder`, checking that an existing file is intact.
    init(folder: String, logger: Logger, writeLatency: DurationHistogram? = nil) throws {
        self.writeLatency = writeLatency
        let folder = folder.isEmpty ? "." : folder
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw PersistenceError("cannot create the persistence folder \(folder): \(error.localizedDescription)")
        }
        self.path = (folder as NSString).appendingPathComponent("broker.db")
        self.logger = logger
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            try database.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                let check = try String.fetchOne(db, sql: "PRAGMA quick_check") ?? "no answer"
                guard check == "ok" else { throw PersistenceError("integrity check failed: \(check)") }
            }
            try Self.migrator.migrate(database)
        } catch let error as PersistenceError {
            throw PersistenceError("the store \(path) is damaged (\(error.description)); move it away to start empty, or restore a copy")
        } catch {
            throw PersistenceError("cannot open the store \(path): \(error)")
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE session (
                        client_id TEXT PRIMARY KEY NOT NULL,
                        expiry_interval INTEGER NOT NULL
                    );
                    CREATE TABLE subscription (
                        client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
                        filter TEXT NOT NULL,
                        options INTEGER NOT NULL,
                        identifier INTEGER,
                        PRIMARY KEY (client_id, filter)
                    );
                    CREATE TABLE message (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
                        packet_identifier INTEGER NOT NULL,
                        qos INTEGER NOT NULL,
                        retain INTEGER NOT NULL,
                        released INTEGER NOT NULL DEFAULT 0,
                        subscription_identifiers TEXT NOT NULL,
                        topic TEXT NOT NULL,
                        payload BLOB NOT NULL,
                        properties BLOB NOT NULL,
                        expires_at REAL,
                        UNIQUE (client_id, packet_identifier)
                    );
                    CREATE TABLE incoming (
                        client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
                        packet_identifier INTEGER NOT NULL,
                        PRIMARY KEY (client_id, packet_identifier)
                    );
                    CREATE TABLE retained (
                        topic TEXT PRIMARY KEY NOT NULL,
                        payload BLOB NOT NULL,
                        qos INTEGER NOT NULL,
                        properties BLOB NOT NULL,
                        expires_at REAL
                    );
                    """
            )
        }
        return migrator
    }

    // MARK: Writing

    /// Queues `operations` for the next group commit; `completion` runs after it (on the writer).
    func commit(_ operations: [StoreOperation], completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        let start = pending.withLockedValue { batch -> Bool in
            batch.operations += operations
            batch.completions.append(completion)
            guard !batch.writing else { return false }
            batch.writing = true
            return true
        }
        if start { writer.async { self.writeBatches() } }
    }

    /// Queues operations whose completion nobody waits for (acknowledgements, unsubscribes).
    func record(_ operations: [StoreOperation]) {
        commit(operations) { _ in }
    }

    /// Commits batch after batch until nothing is pending.
    private func writeBatches() {
        while true {
            let batch = pending.withLockedValue { batch -> Batch? in
                guard !batch.operations.isEmpty || !batch.completions.isEmpty else {
                    batch.writing = false
                    return nil
                }
                let taken = batch
                batch.operations = []
                batch.completions = []
                return taken
            }
            guard let batch else { return }
            let result: Result<Void, any Error>
            let started = ContinuousClock.now
            do {
                try database.write { db in
                    for operation in batch.operations { try Self.apply(operation, db) }
                }
                writeLatency?.record(ContinuousClock.now - started)
                result = .success(())
            } catch {
                logger.error("persistence write failed: \(error)", metadata: ["store": "\(path)"])
                result = .failure(error)
            }
            for completion in batch.completions { completion(result) }
        }
    }

    /// Waits until everything queued so far is on disk.
    func flush() async {
        await withCheckedContinuation { continuation in
            commit([]) { _ in continuation.resume() }
        }
    }

    private static func apply(_ operation: StoreOperation, _ db: Database) throws {
        switch operation {
        case .putSession(let clientID, let expiry):
            try db.execute(
                sql:
                    "INSERT INTO session (client_id, expiry_interval) VALUES (?, ?) ON CONFLICT(client_id) DO UPDATE SET expiry_interval = excluded.expiry_interval",
                arguments: [clientID, Int64(expiry)]
            )
        case .deleteSession(let clientID):
            try db.execute(sql: "DELETE FROM session WHERE client_id = ?", arguments: [clientID])
        case .putSubscription(let clientID, let filter, let options, let identifier):
            try db.execute(
                sql: "INSERT OR REPLACE INTO subscription (client_id, filter, options, identifier) VALUES (?, ?, ?, ?)",
                arguments: [clientID, filter, Int(options.storageByte), identifier]
            )
        case .deleteSubscription(let clientID, let filter):
            try db.execute(sql: "DELETE FROM subscription WHERE client_id = ? AND filter = ?", arguments: [clientID, filter])
        case .putRetained(let message):
            try db.execute(
                sql: "INSERT OR REPLACE INTO retained (topic, payload, qos, properties, expires_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [
                    message.topic, Data(message.payload.readableBytesView), Int(message.qos.rawValue), try message.storedProperties(),
                    message.wallClockExpiry,
                ]
            )
        case .deleteRetained(let topic):
            try db.execute(sql: "DELETE FROM retained WHERE topic = ?", arguments: [topic])
        case .putMessage(let clientID, let identifier, let qos, let retain, let subscriptionIdentifiers, let message):
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO message (client_id, packet_identifier, qos, retain, subscription_identifiers, topic, payload, properties, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    clientID, Int(identifier), Int(qos.rawValue), retain, subscriptionIdentifiers.map(String.init).joined(separator: ","),
                    message.topic, Data(message.payload.readableBytesView), try message.storedProperties(), message.wallClockExpiry,
                ]
            )
        case .releaseMessage(let clientID, let identifier):
            try db.execute(
                sql: "UPDATE message SET released = 1 WHERE client_id = ? AND packet_identifier = ?",
                arguments: [clientID, Int(identifier)]
            )
        case .deleteMessage(let clientID, let identifier):
            try db.execute(sql: "DELETE FROM message WHERE client_id = ? AND packet_identifier = ?", arguments: [clientID, Int(identifier)])
        case .putIncoming(let clientID, let identifier):
            try db.execute(
                sql: "INSERT OR IGNORE INTO incoming (client_id, packet_identifier) VALUES (?, ?)",
                arguments: [clientID, Int(identifier)]
            )
        case .deleteIncoming(let clientID, let identifier):
            try db.execute(sql: "DELETE FROM incoming WHERE client_id = ? AND packet_identifier = ?", arguments: [clientID, Int(identifier)])
        }
    }

    // MARK: Loading

    /// Everything the store holds, to rebuild sessions and retained messages at start-up.
    func load() throws -> StoredState {
        do {
            return try database.read { db in
                var state = StoredState()
                var sessions: [String: StoredState.StoredSession] = [:]
                var order: [String] = []
                for row in try Row.fetchAll(db, sql: "SELECT client_id, expiry_interval FROM session ORDER BY rowid") {
                    let clientID: String = row["client_id"]
                    sessions[clientID] = .init(clientID: clientID, expiryInterval: UInt32(clamping: row["expiry_interval"] as Int64))
                    order.append(clientID)
                }
                for row in try Row.fetchAll(db, sql: "SELECT client_id, filter, options, identifier FROM subscription ORDER BY rowid") {
                    let clientID: String = row["client_id"]
                    let options = SubscriptionOptions(storageByte: UInt8(truncatingIfNeeded: row["options"] as Int))
                    sessions[clientID]?.subscriptions.append((row["filter"], options, row["identifier"]))
                }
                for row in try Row.fetchAll(db, sql: "SELECT * FROM message ORDER BY sequence") {
                    let clientID: String = row["client_id"]
                    let message = try ApplicationMessage(
                        storedTopic: row["topic"],
                        payload: row["payload"],
                        qos: row["qos"],
                        properties: row["properties"],
                        expiresAt: row["expires_at"]
                    )
                    let identifiers = (row["subscription_identifiers"] as String).split(separator: ",").compactMap { Int($0) }
                    sessions[clientID]?.messages.append(
                        .init(
                            packetIdentifier: UInt16(truncatingIfNeeded: row["packet_identifier"] as Int),
                            qos: QoS(rawValue: UInt8(truncatingIfNeeded: row["qos"] as Int)) ?? .atLeastOnce,
                            retain: row["retain"],
                            subscriptionIdentifiers: identifiers,
                            released: row["released"],
                            message: message
                        )
                    )
                }
                for row in try Row.fetchAll(db, sql: "SELECT client_id, packet_identifier FROM incoming") {
                    let clientID: String = row["client_id"]
                    sessions[clientID]?.incoming.append(UInt16(truncatingIfNeeded: row["packet_identifier"] as Int))
                }
                state.sessions = order.compactMap { sessions[$0] }
                for row in try Row.fetchAll(db, sql: "SELECT * FROM retained ORDER BY topic") {
                    var message = try ApplicationMessage(
                        storedTopic: row["topic"],
                        payload: row["payload"],
                        qos: row["qos"],
                        properties: row["properties"],
                        expiresAt: row["expires_at"]
                    )
                    message.retain = true
                    state.retained.append(message)
                }
                return state
            }
        } catch {
            throw PersistenceError("cannot read the store \(path): \(error)")
        }
    }
}

extension SubscriptionOptions {
    /// The 5.0 subscription options byte, which holds every option.
    var storageByte: UInt8 {
        qos.rawValue | (noLocal ? 0x04 : 0) | (retainAsPublished ? 0x08 : 0) | (retainHandling.rawValue << 4)
    }

    init(storageByte byte: UInt8) {
        self.init(
            qos: QoS(rawValue: byte & 0x03) ?? .atMostOnce,
            noLocal: byte & 0x04 != 0,
            retainAsPublished: byte & 0x08 != 0,
            retainHandling: RetainHandling(rawValue: (byte >> 4) & 0x03) ?? .sendOnSubscribe
        )
    }
}

extension ApplicationMessage {
    /// The expiry as seconds since 1970, which survives a restart (NIODeadline does not).
    var wallClockExpiry: Double? {
        guard let expiresAt else { return nil }
        let remaining = Double((expiresAt - .now()).nanoseconds) / 1e9
        return Date().timeIntervalSince1970 + remaining
    }

    func storedProperties() throws -> Data {
        Data(try properties.encodedForStorage().readableBytesView)
    }

    init(storedTopic topic: String, payload: Data, qos: Int, properties: Data, expiresAt: Double?) throws {
        let decoded = try Properties.decodeFromStorage(ByteBuffer(bytes: properties), context: .publish)
        self.init(
            topic: topic,
            payload: ByteBuffer(bytes: payload),
            qos: QoS(rawValue: UInt8(truncatingIfNeeded: qos)) ?? .atMostOnce,
            retain: false,
            properties: decoded
        )
        if let expiresAt {
            let remaining = expiresAt - Date().timeIntervalSince1970
            self.expiresAt = .now() + .milliseconds(Int64(max(0, remaining) * 1000))
        }
    }
}

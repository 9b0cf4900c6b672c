import Atomics
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
///
/// Messages queued for persistent sessions live here; sessions keep only a window of them in
/// memory and read the rest back with ``fetchQueued(clientID:limit:assign:completion:)``,
/// which runs after every write queued before it. The store's size is kept under
/// `persistence_max_bytes` (``hasRoom(for:)``).
final class SQLiteBrokerStore: Sendable {
    private let database: DatabaseQueue
    private let path: String
    private let logger: Logger
    private let writer = DispatchQueue(label: "databus.broker.store")
    private let pending = NIOLockedValueBox<Batch>(Batch())
    private let writeLatency: DurationHistogram?
    /// The order of queued copies across all sessions; each session reads its own in this order.
    private let sequence = ManagedAtomic<Int64>(0)
    /// The budget for the file's used pages (0: none).
    let maximumBytes: Int
    /// Bytes of the pages in use, measured after each commit.
    private let usedBytes = ManagedAtomic<Int>(0)
    /// Bytes of queued copies handed to the writer and not yet committed.
    private let pendingBytes = ManagedAtomic<Int>(0)

    private struct Batch {
        var operations: [StoreOperation] = []
        var completions: [@Sendable (Result<Void, any Error>) -> Void] = []
        var fetches: [Fetch] = []
        var writing = false
    }

    /// A read of one session's copies that wait only in the store.
    private struct Fetch {
        let clientID: String
        let limit: Int
        let assign: @Sendable (Int) -> [UInt16]
        let completion: @Sendable (_ messages: [StoredState.StoredMessage], _ unused: [UInt16]) -> Void
    }

    /// Opens (or creates) `broker.db` in `folder`, checking that an existing file is intact.
    /// - Parameter maximumBytes: the budget for the store's size (0: none).
    init(folder: String, logger: Logger, maximumBytes: Int = 0, writeLatency: DurationHistogram? = nil) throws {
        self.writeLatency = writeLatency
        self.maximumBytes = maximumBytes
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
            try database.read { db in
                let last = try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM message") ?? 0
                sequence.store(last, ordering: .relaxed)
            }
            try measureUsedBytes()
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
        migrator.registerMigration("v2: copies wait in the store without a packet identifier") { db in
            // The broker numbers copies itself (sequence) and gives a packet identifier only to
            // those in memory; the rest wait here, read back in sequence order.
            try db.execute(
                sql: """
                    CREATE TABLE message_v2 (
                        sequence INTEGER PRIMARY KEY,
                        client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
                        packet_identifier INTEGER,
                        qos INTEGER NOT NULL,
                        retain INTEGER NOT NULL,
                        released INTEGER NOT NULL DEFAULT 0,
                        subscription_identifiers TEXT NOT NULL,
                        topic TEXT NOT NULL,
                        payload BLOB NOT NULL,
                        properties BLOB NOT NULL,
                        expires_at REAL
                    );
                    INSERT INTO message_v2 SELECT sequence, client_id, packet_identifier, qos, retain, released,
                        subscription_identifiers, topic, payload, properties, expires_at FROM message;
                    DROP TABLE message;
                    ALTER TABLE message_v2 RENAME TO message;
                    CREATE UNIQUE INDEX message_by_identifier ON message(client_id, packet_identifier) WHERE packet_identifier IS NOT NULL;
                    CREATE INDEX message_waiting ON message(client_id, sequence) WHERE packet_identifier IS NULL;
                    """
            )
        }
        migrator.registerMigration("v3: copies remember the shared subscription they came through") { db in
            // So that after a restart they can still go to another member of the group.
            try db.execute(sql: "ALTER TABLE message ADD COLUMN share TEXT")
        }
        return migrator
    }

    // MARK: Budget

    /// A number for the next queued copy, in the order copies are queued.
    func nextSequence() -> Int64 {
        sequence.wrappingIncrementThenLoad(ordering: .relaxed)
    }

    /// Whether a copy of `bytes` fits the budget (`persistence_max_bytes`).
    func hasRoom(for bytes: Int) -> Bool {
        maximumBytes == 0 || usedBytes.load(ordering: .relaxed) + pendingBytes.load(ordering: .relaxed) + bytes <= maximumBytes
    }

    /// Bytes the store's pages in use take, as of the last commit.
    var sizeInUse: Int { usedBytes.load(ordering: .relaxed) }

    private func measureUsedBytes() throws {
        let used = try database.read { db -> Int in
            let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            let size = try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            return (pages - free) * size
        }
        usedBytes.store(used, ordering: .relaxed)
    }

    private static func queuedBytes(_ operations: [StoreOperation]) -> Int {
        var total = 0
        for operation in operations {
            if case .putMessage(_, _, _, _, _, _, _, let message) = operation { total += message.storedSize }
        }
        return total
    }

    // MARK: Writing

    /// Queues `operations` for the next group commit; `completion` runs after it (on the writer).
    func commit(_ operations: [StoreOperation], completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        let bytes = Self.queuedBytes(operations)
        if bytes > 0 { pendingBytes.wrappingIncrement(by: bytes, ordering: .relaxed) }
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

    /// Reads up to `limit` of `clientID`'s copies that wait only in the store, oldest first,
    /// after every write queued before this call. `assign` (called in the transaction) gives
    /// them packet identifiers, which are stored before `completion` gets the copies (and the
    /// identifiers it gave that were not used, when the read failed).
    func fetchQueued(
        clientID: String,
        limit: Int,
        assign: @escaping @Sendable (Int) -> [UInt16],
        completion: @escaping @Sendable (_ messages: [StoredState.StoredMessage], _ unused: [UInt16]) -> Void
    ) {
        let start = pending.withLockedValue { batch -> Bool in
            batch.fetches.append(Fetch(clientID: clientID, limit: limit, assign: assign, completion: completion))
            guard !batch.writing else { return false }
            batch.writing = true
            return true
        }
        if start { writer.async { self.writeBatches() } }
    }

    /// Commits batch after batch until nothing is pending.
    private func writeBatches() {
        while true {
            let batch = pending.withLockedValue { batch -> Batch? in
                guard !batch.operations.isEmpty || !batch.completions.isEmpty || !batch.fetches.isEmpty else {
                    batch.writing = false
                    return nil
                }
                let taken = batch
                batch.operations = []
                batch.completions = []
                batch.fetches = []
                return taken
            }
            guard let batch else { return }
            let result: Result<Void, any Error>
            let started = ContinuousClock.now
            var followUps: [@Sendable () -> Void] = []
            do {
                followUps = try database.write { db in
                    var followUps: [@Sendable () -> Void] = []
                    for operation in batch.operations {
                        if let followUp = try Self.apply(operation, db) { followUps.append(followUp) }
                    }
                    return followUps
                }
                writeLatency?.record(ContinuousClock.now - started)
                result = .success(())
            } catch {
                logger.error("persistence write failed: \(error)", metadata: ["store": "\(path)"])
                result = .failure(error)
            }
            let written = Self.queuedBytes(batch.operations)
            if written > 0 { pendingBytes.wrappingDecrement(by: written, ordering: .relaxed) }
            try? measureUsedBytes()
            for followUp in followUps { followUp() }
            for completion in batch.completions { completion(result) }
            for fetch in batch.fetches {
                let (messages, unused) = read(fetch)
                fetch.completion(messages, unused)
            }
        }
    }

    private func read(_ fetch: Fetch) -> ([StoredState.StoredMessage], unused: [UInt16]) {
        let assigned = NIOLockedValueBox<[UInt16]>([])
        do {
            let messages = try database.write { db -> [StoredState.StoredMessage] in
                let rows = try Row.fetchAll(
                    db,
                    sql: "SELECT * FROM message WHERE client_id = ? AND packet_identifier IS NULL ORDER BY sequence LIMIT ?",
                    arguments: [fetch.clientID, fetch.limit]
                )
                guard !rows.isEmpty else { return [] }
                let identifiers = fetch.assign(rows.count)
                assigned.withLockedValue { $0 = identifiers }
                var messages: [StoredState.StoredMessage] = []
                messages.reserveCapacity(identifiers.count)
                for (row, identifier) in zip(rows, identifiers) {
                    try db.execute(
                        sql: "UPDATE message SET packet_identifier = ? WHERE sequence = ?",
                        arguments: [Int(identifier), row["sequence"] as Int64]
                    )
                    var message = try Self.storedMessage(row)
                    message.packetIdentifier = identifier
                    messages.append(message)
                }
                return messages
            }
            return (messages, [])
        } catch {
            logger.error("could not read queued messages: \(error)", metadata: ["store": "\(path)", "client": "\(fetch.clientID)"])
            return ([], assigned.withLockedValue { $0 })
        }
    }

    private static func storedMessage(_ row: Row) throws -> StoredState.StoredMessage {
        let message = try ApplicationMessage(
            storedTopic: row["topic"],
            payload: row["payload"],
            qos: row["qos"],
            properties: row["properties"],
            expiresAt: row["expires_at"]
        )
        return StoredState.StoredMessage(
            packetIdentifier: UInt16(truncatingIfNeeded: (row["packet_identifier"] as Int?) ?? 0),
            qos: QoS(rawValue: UInt8(truncatingIfNeeded: row["qos"] as Int)) ?? .atLeastOnce,
            retain: row["retain"],
            subscriptionIdentifiers: (row["subscription_identifiers"] as String).split(separator: ",").compactMap { Int($0) },
            released: row["released"],
            share: row["share"],
            message: message
        )
    }

    /// Waits until everything queued so far is on disk.
    func flush() async {
        await withCheckedContinuation { continuation in
            commit([]) { _ in continuation.resume() }
        }
    }

    /// Rows of a session are written only while the session is stored: a session that ended
    /// (or was replaced by a clean start) in the same batch must not fail the whole batch on
    /// its foreign key.
    private static let whileSessionExists = "WHERE EXISTS (SELECT 1 FROM session WHERE client_id = ?)"

    /// A session's copies of one shared subscription that wait only in the store (client, share).
    private static let waitingThrough = "client_id = ? AND share = ? AND packet_identifier IS NULL"

    /// Applies one operation in the batch's transaction.
    /// - Returns: what to run once the transaction is committed, if anything.
    private static func apply(_ operation: StoreOperation, _ db: Database) throws -> (@Sendable () -> Void)? {
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
                sql: "INSERT OR REPLACE INTO subscription (client_id, filter, options, identifier) SELECT ?, ?, ?, ? \(whileSessionExists)",
                arguments: [clientID, filter, Int(options.storageByte), identifier, clientID]
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
        case .putMessage(let clientID, let sequence, let identifier, let qos, let retain, let subscriptionIdentifiers, let share, let message):
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO message (sequence, client_id, packet_identifier, qos, retain, subscription_identifiers, share, topic, payload, properties, expires_at)
                    SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \(whileSessionExists)
                    """,
                arguments: [
                    sequence, clientID, identifier.map { Int($0) }, Int(qos.rawValue), retain,
                    subscriptionIdentifiers.map(String.init).joined(separator: ","), share,
                    message.topic, Data(message.payload.readableBytesView), try message.storedProperties(), message.wallClockExpiry, clientID,
                ]
            )
        case .moveWaiting(let from, let to, let share, let qos, let subscriptionIdentifiers, let moved):
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM session WHERE client_id = ?)", arguments: [to]) == true else {
                return nil
            }
            let row = try Row.fetchOne(
                db,
                sql: "SELECT COUNT(*) AS count, SUM(length(payload)) AS bytes FROM message WHERE \(waitingThrough)",
                arguments: [from, share]
            )
            let count: Int = row?["count"] ?? 0
            let bytes: Int = row?["bytes"] ?? 0
            guard count > 0 else { return nil }
            try db.execute(
                sql: "UPDATE message SET client_id = ?, qos = MIN(qos, ?), subscription_identifiers = ? WHERE \(waitingThrough)",
                arguments: [to, Int(qos.rawValue), subscriptionIdentifiers.map(String.init).joined(separator: ","), from, share]
            )
            return { moved(count, bytes) }
        case .takeWaiting(let from, let share, let taken):
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM message WHERE \(waitingThrough) ORDER BY sequence", arguments: [from, share])
            guard !rows.isEmpty else { return nil }
            let copies = try rows.map { try storedMessage($0) }
            let bytes = copies.reduce(0) { $0 + $1.message.payload.readableBytes }
            try db.execute(sql: "DELETE FROM message WHERE \(waitingThrough)", arguments: [from, share])
            return { taken(copies, bytes) }
        case .releaseMessage(let clientID, let identifier):
            try db.execute(
                sql: "UPDATE message SET released = 1 WHERE client_id = ? AND packet_identifier = ?",
                arguments: [clientID, Int(identifier)]
            )
        case .deleteMessage(let clientID, let identifier):
            try db.execute(sql: "DELETE FROM message WHERE client_id = ? AND packet_identifier = ?", arguments: [clientID, Int(identifier)])
        case .putIncoming(let clientID, let identifier):
            try db.execute(
                sql: "INSERT OR IGNORE INTO incoming (client_id, packet_identifier) SELECT ?, ? \(whileSessionExists)",
                arguments: [clientID, Int(identifier), clientID]
            )
        case .deleteIncoming(let clientID, let identifier):
            try db.execute(sql: "DELETE FROM incoming WHERE client_id = ? AND packet_identifier = ?", arguments: [clientID, Int(identifier)])
        }
        return nil
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
                let withIdentifier = "SELECT * FROM message WHERE packet_identifier IS NOT NULL ORDER BY sequence"
                for row in try Row.fetchAll(db, sql: withIdentifier) {
                    let clientID: String = row["client_id"]
                    sessions[clientID]?.messages.append(try Self.storedMessage(row))
                }
                let waiting = """
                    SELECT client_id, COUNT(*) AS count, SUM(length(payload)) AS bytes FROM message
                    WHERE packet_identifier IS NULL GROUP BY client_id
                    """
                for row in try Row.fetchAll(db, sql: waiting) {
                    let clientID: String = row["client_id"]
                    sessions[clientID]?.storedOnly = row["count"]
                    sessions[clientID]?.storedOnlyBytes = row["bytes"] ?? 0
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
    /// About what a stored copy takes in the store, for its budget.
    var storedSize: Int { payload.readableBytes + topic.utf8.count + properties.count * 8 + 96 }

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

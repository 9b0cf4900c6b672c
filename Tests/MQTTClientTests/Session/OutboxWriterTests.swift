import DatabusTestSupport
import Dispatch
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import MQTTClient

/// A persistence whose transactions wait until the test lets them go, recording what each held.
final class GatedPersistence: OutboxPersistence {
    let transactions = NIOLockedValueBox<[OutboxChanges]>([])
    let gate = DispatchSemaphore(value: 0)
    let entered = DispatchSemaphore(value: 0)
    let failNext = NIOLockedValueBox(false)

    func loadEntries() throws -> [OutboxEntry] { [] }
    func append(_ entry: OutboxEntry) throws {}
    func update(_ entry: OutboxEntry) throws {}
    func remove(sequence: UInt64) throws {}

    func apply(_ changes: OutboxChanges) throws {
        entered.signal()
        gate.wait()
        transactions.withLockedValue { $0.append(changes) }
        if failNext.withLockedValue({ failing in
            defer { failing = false }
            return failing
        }) {
            throw MQTTClientError(.persistenceFailed, "disk full")
        }
    }
}

/// Group commit: many changes per transaction, and each waiter released by the transaction
/// that holds its own changes, not a later one.
@Suite("Outbox writer (group commit)", .timeLimit(.minutes(1)))
struct OutboxWriterTests {
    static func entry(_ sequence: UInt64) -> OutboxEntry {
        OutboxEntry(sequence: sequence, topic: "t", payload: ByteBuffer(string: "\(sequence)"), qos: .atLeastOnce, retain: false, properties: [])
    }

    static func appending(_ sequences: UInt64...) -> OutboxChanges {
        var changes = OutboxChanges()
        for sequence in sequences { changes.append(entry(sequence)) }
        return changes
    }

    @Test("changes handed over during a transaction go together into the next one, and each waiter hears of its own")
    func groupCommit() async throws {
        let persistence = GatedPersistence()
        let writer = OutboxWriter(persistence: persistence)
        let first = writer.submit(Self.appending(1))
        persistence.entered.wait()  // The first transaction runs (and waits at the gate).
        let second = writer.submit(Self.appending(2, 3))
        let third = writer.submit(Self.appending(4))

        let firstStored = Task { try await writer.waitUntilStored(first) }
        let laterStored = Task { try await writer.waitUntilStored(third) }
        persistence.gate.signal()
        try await firstStored.value
        persistence.entered.wait()  // The second transaction started: the first waiter was not held for it.
        persistence.gate.signal()
        try await laterStored.value
        try await writer.waitUntilStored(second)

        let transactions = persistence.transactions.withLockedValue { $0 }
        #expect(transactions.map { $0.appended.map(\.sequence) } == [[1], [2, 3, 4]])
    }

    @Test("a failed transaction fails its waiters and is reported once; the next one succeeds")
    func failure() async throws {
        let persistence = GatedPersistence()
        persistence.failNext.withLockedValue { $0 = true }
        let writer = OutboxWriter(persistence: persistence)
        let failed = writer.submit(Self.appending(1))
        persistence.gate.signal()
        await #expect(throws: MQTTClientError.self) { try await writer.waitUntilStored(failed) }
        #expect(writer.takeFailures().count == 1)
        #expect(writer.takeFailures().isEmpty)
        let next = writer.submit(Self.appending(2))
        persistence.gate.signal()
        try await writer.waitUntilStored(next)
    }

    @Test("a load runs after the changes handed over before it are stored")
    func loadSeesEarlierChanges() async throws {
        let directory = try TemporaryDirectory(prefix: "databus-outbox-writer")
        defer { directory.remove() }
        let writer = OutboxWriter(persistence: try SQLiteOutboxPersistence(path: directory.file("outbox.sqlite")))
        writer.submit(Self.appending(1, 2, 3))
        var removal = OutboxChanges()
        removal.remove(2)
        writer.submit(removal)
        let loaded = try await writer.load { try $0.loadEntries(after: 0, limit: 10) }
        #expect(loaded.map(\.sequence) == [1, 3])
    }

    @Test("an entry appended and removed in the same transaction is neither written nor kept; a state change rides with its entry")
    func coalescing() {
        var changes = Self.appending(1, 2, 3)
        var published = Self.entry(3)
        published.state = .published(packetIdentifier: 7)
        changes.update(published)
        var stateOfOlder = Self.entry(0)
        stateOfOlder.state = .published(packetIdentifier: 6)
        changes.update(stateOfOlder)
        changes.remove(1)
        changes.remove(2)
        let coalesced = changes.coalesced()
        #expect(coalesced.appended.map(\.sequence) == [3])
        #expect(coalesced.appended.first?.state == .published(packetIdentifier: 7))
        #expect(coalesced.updated.map(\.sequence) == [0])
        #expect(coalesced.removed == [1...2])
    }
}

import DatabusTestSupport
import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

/// A backlog longer than the outbox keeps in memory: the rest waits in the store and is read
/// back in order as the memory empties.
@Suite("Outbox backlog beyond memory", .serialized, .timeLimit(.minutes(2)))
struct OutboxBacklogTests {
    @Test("with a persistence, messages past the memory limit wait only in the store and come back in order")
    func storedTail() throws {
        let persistence = RecordingPersistence()
        var outbox = Outbox(configuration: OutboxConfiguration(persistence: persistence, messagesInMemory: 4))
        for number in 0..<10 {
            _ = try outbox.append(topic: "t", payload: ByteBuffer(string: "\(number)"), qos: .atLeastOnce, retain: false, properties: [])
        }
        try persistence.apply(outbox.takeChanges())
        #expect(outbox.entriesInMemory.count == 4)
        #expect(outbox.statistics.messages == 10)
        #expect(outbox.statistics.bytes == 20)

        var sent: [String] = []
        while let entry = outbox.popQueued() {
            sent.append(String(buffer: entry.payload))
            outbox.remove(sequence: entry.sequence)
            if outbox.wantsRefill {
                let request = outbox.refillRequest
                outbox.refill(with: try persistence.loadEntries(after: request.after, limit: request.limit))
                #expect(outbox.entriesInMemory.count <= 4)
            }
        }
        #expect(sent == (0..<10).map(String.init))
        #expect(outbox.statistics.messages == 0 && outbox.statistics.bytes == 0)
    }

    @Test("a restored outbox loads only the memory's worth and counts the rest")
    func restoreLoadsAWindow() throws {
        let directory = try TemporaryDirectory(prefix: "databus-outbox-backlog")
        defer { directory.remove() }
        let store = try SQLiteOutboxPersistence(path: directory.file("outbox.sqlite"))
        var changes = OutboxChanges()
        for sequence in UInt64(1)...1_000 {
            changes.append(
                OutboxEntry(sequence: sequence, topic: "t", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, retain: false, properties: [])
            )
        }
        try store.apply(changes)
        var outbox = Outbox(configuration: OutboxConfiguration(persistence: store, messagesInMemory: 100))
        try outbox.restore()
        #expect(outbox.entriesInMemory.map(\.sequence) == Array(1...100))
        #expect(outbox.statistics.messages == 1_000)
        #expect(outbox.statistics.bytes == 2_000)
        // New messages go after the stored ones.
        let (entry, _) = try outbox.append(topic: "t", payload: ByteBuffer(string: "y"), qos: .atLeastOnce, retain: false, properties: [])
        #expect(entry.sequence == 1_001)
    }

    @Test(
        "20,000 messages enqueued while offline through a SQLite outbox holding 500 in memory arrive in order",
        arguments: TestBrokerKind.allCases
    )
    func backlogDrains(kind: TestBrokerKind) async throws {
        let directory = try TemporaryDirectory(prefix: "databus-outbox-backlog")
        defer { directory.remove() }
        let total = 20_000
        // No queue limit: mosquitto drops QoS 1 messages past its default 1,000 queued for a
        // subscriber, and a backlog drains faster than the subscriber reads.
        try await kind.with(extraConfiguration: "max_queued_messages 0") { broker in
            try await withClient(.test(broker, id: "lpr-server")) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/8/detection", qos: .atLeastOnce)
                var configuration = MQTTClient.Configuration.test(broker, id: "camera-8")
                configuration.outbox = OutboxConfiguration(
                    persistence: try SQLiteOutboxPersistence(path: directory.file("outbox.sqlite")),
                    messagesInMemory: 500
                )
                try await withClient(configuration, connect: false) { camera in
                    let messages = (0..<total).map {
                        MQTTClient.OutgoingMessage(topic: "lprserver/cameras/8/detection", payload: ByteBuffer(string: "\($0)"), qos: .atLeastOnce)
                    }
                    var tickets: [PublishBatchTicket] = []
                    for start in stride(from: 0, to: total, by: 1_000) {
                        tickets.append(try await camera.enqueue(batch: Array(messages[start..<start + 1_000])))
                    }
                    #expect(await camera.outboxStatistics.messages == total)
                    #expect(await camera.outboxMessagesInMemory <= 500)
                    try await camera.connect()
                    let received = try await collect(detections, count: total, timeout: .seconds(60))
                    expectNumbered(received.map(\.payloadString), 0..<total)
                    for ticket in tickets {
                        #expect(try await ticket.results().allSatisfy { (try? $0.get().isSuccess) == true })
                    }
                }
            }
        }
    }
}

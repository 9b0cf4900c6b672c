import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

/// The SQLite outbox: what it stores comes back after a restart, and a client started on it
/// sends what an earlier client left.
@Suite("SQLite outbox", .serialized, .timeLimit(.minutes(2)))
struct SQLiteOutboxTests {
    @Test("entries come back from the file with topic, payload, QoS, retain, properties and state")
    func roundTrip() throws {
        let directory = try TemporaryDirectory(prefix: "databus-sqlite-outbox")
        defer { directory.remove() }
        let path = directory.file("outbox.sqlite")
        let entries = [
            OutboxEntry(
                sequence: 1,
                topic: "lprserver/cameras/4/detection",
                payload: ByteBuffer(bytes: [0, 1, 2, 255]),
                qos: .atLeastOnce,
                retain: false,
                properties: [.contentType("application/json"), .userProperty("site", "gate-3"), .messageExpiryInterval(60)],
                state: .published(packetIdentifier: 17)
            ),
            OutboxEntry(sequence: 2, topic: "a", payload: ByteBuffer(string: "x"), qos: .exactlyOnce, retain: true, properties: [], state: .queued),
            OutboxEntry(sequence: 3, topic: "b", payload: ByteBuffer(), qos: .atMostOnce, retain: false, properties: [], state: .queued),
        ]
        do {
            let store = try SQLiteOutboxPersistence(path: path)
            for entry in entries { try store.append(entry) }
            var released = entries[1]
            released.state = .released(packetIdentifier: 9, reasonCode: .noMatchingSubscribers)
            try store.update(released)
            try store.remove(sequence: 3)
        }
        let reopened = try SQLiteOutboxPersistence(path: path).loadEntries()
        var expected = Array(entries.prefix(2))
        expected[1].state = .released(packetIdentifier: 9, reasonCode: .noMatchingSubscribers)
        #expect(reopened == expected)
    }

    @Test("a restored session resumes unacknowledged flows with DUP and the same packet identifiers")
    func restoredSession() throws {
        let directory = try TemporaryDirectory(prefix: "databus-sqlite-outbox")
        defer { directory.remove() }
        let path = directory.file("outbox.sqlite")
        let store = try SQLiteOutboxPersistence(path: path)
        var first = ClientSession(
            version: .v5,
            receiveMaximum: 10,
            topicAliasMaximum: 0,
            outbox: OutboxConfiguration(persistence: store)
        )
        for payload in ["a", "b", "c"] {
            _ = try first.enqueue(topic: "t", payload: ByteBuffer(string: payload), qos: .exactlyOnce, retain: false, properties: [])
        }
        _ = first.connected(ConnAckPacket(properties: [.receiveMaximum(2)]))
        while first.nextOutgoing() != nil {}
        _ = first.receive(.pubrec(PubRecPacket(packetIdentifier: 1)))
        // What the client's writer does with the session's changes (one transaction).
        try store.apply(first.takeOutboxChanges())

        // The process dies here. A new one opens the same file.
        var second = ClientSession(
            version: .v5,
            receiveMaximum: 10,
            topicAliasMaximum: 0,
            outbox: OutboxConfiguration(persistence: try SQLiteOutboxPersistence(path: path))
        )
        try second.restoreOutbox()
        let resumed = ClientSessionTests.sentPackets(second.connected(ConnAckPacket(sessionPresent: true)))
        let expected: [MQTTPacket] = [
            .pubrel(PubRelPacket(packetIdentifier: 1)),
            .publish(PublishPacket(topicName: "t", payload: ByteBuffer(string: "b"), qos: .exactlyOnce, dup: true, packetIdentifier: 2)),
        ]
        #expect(resumed == expected)
        #expect(ClientSessionTests.drain(&second).map { String(buffer: $0.payload) } == ["c"])
    }

    @Test(
        "a client on the file sends, in order, what a client that never reached the broker left in it",
        arguments: TestBrokerKind.allCases,
        [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func leftoverMessagesAreSent(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        let directory = try TemporaryDirectory(prefix: "databus-sqlite-outbox")
        defer { directory.remove() }
        let path = directory.file("outbox.sqlite")
        try await kind.with { broker in
            try await withClient(.test(broker, id: "lpr-server", version: version)) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/5/detection", qos: .atLeastOnce)

                var configuration = MQTTClient.Configuration.test(broker, id: "camera-5", version: version)
                configuration.outbox = OutboxConfiguration(persistence: try SQLiteOutboxPersistence(path: path))
                // The first process hands over 1,000 messages and dies before it connects.
                let first = MQTTClient(configuration: configuration, logger: testLogger)
                for number in 0..<1_000 {
                    _ = try await first.enqueue(
                        topic: "lprserver/cameras/5/detection",
                        payload: ByteBuffer(string: "\(number)"),
                        qos: .atLeastOnce
                    )
                }

                configuration.outbox = OutboxConfiguration(persistence: try SQLiteOutboxPersistence(path: path))
                try await withClient(configuration) { second in
                    let received = try await collect(detections, count: 1_000)
                    expectNumbered(received.map(\.payloadString), 0..<1_000)
                    // Everything went: the file is empty once the last acknowledgement is in.
                    try await withDeadline(.seconds(10), "the outbox to empty") {
                        while await second.outboxStatistics.messages > 0 { try await Task.sleep(for: .milliseconds(10)) }
                    }
                }
                #expect(try SQLiteOutboxPersistence(path: path).loadEntries().isEmpty)
            }
        }
    }

    @Test("rows that do not hold a PUBLISH packet are reported as a persistence failure, and the rows before them still load")
    func unreadableRows() async throws {
        let directory = try TemporaryDirectory(prefix: "databus-sqlite-outbox")
        defer { directory.remove() }
        let path = directory.file("outbox.sqlite")
        let store = try SQLiteOutboxPersistence(path: path)
        try store.append(OutboxEntry(sequence: 1, topic: "t", payload: ByteBuffer(string: "fine"), qos: .atLeastOnce, retain: false, properties: []))
        let sqlite = try #require(
            ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "the sqlite3 command (Debian package sqlite3) writes the broken rows"
        )
        // A PUBLISH cut off in its length, an empty blob, and a reserved packet type.
        for (sequence, blob) in [(2, "X'30FF'"), (3, "X''"), (4, "X'0102030405'")] {
            let result = try await runProgram(sqlite, [path, "INSERT INTO outbox (sequence, publish, state) VALUES (\(sequence), \(blob), 0)"])
            #expect(result.status == 0, "sqlite3 could not insert row \(sequence)")
        }
        #expect(try store.loadEntries(after: 0, limit: 1).map { String(buffer: $0.payload) } == ["fine"])
        for after in [UInt64(0), 2, 3] {
            let error = #expect(throws: MQTTClientError.self) { try store.loadEntries(after: after, limit: 10) }
            #expect(error?.code == .persistenceFailed)
        }
    }
}

import DatabusTestSupport
import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

/// `enqueue(batch:)`: many messages in one call with one ticket.
@Suite("Publishing in batches", .serialized, .timeLimit(.minutes(2)))
struct PublishBatchTests {
    static func batch(_ numbers: Range<Int>, topic: String = "lprserver/cameras/9/detection", qos: QoS) -> [MQTTClient.OutgoingMessage] {
        numbers.map { MQTTClient.OutgoingMessage(topic: topic, payload: ByteBuffer(string: "\($0)"), qos: qos) }
    }

    @Test(
        "batches at each QoS arrive in order and every outcome is reported in the batch's order",
        arguments: TestBrokerKind.allCases,
        [QoS.atMostOnce, .atLeastOnce, .exactlyOnce]
    )
    func inOrder(kind: TestBrokerKind, qos: QoS) async throws {
        // No queue limit: mosquitto drops QoS 1/2 messages past its default 1,000 queued for a
        // subscriber, and the publisher outruns a QoS 2 subscriber.
        try await kind.with(extraConfiguration: "max_queued_messages 0") { broker in
            try await withClient(.test(broker, id: "lpr-server")) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/9/detection", qos: .exactlyOnce)
                try await withClient(.test(broker, id: "camera-9")) { camera in
                    var tickets: [PublishBatchTicket] = []
                    for start in stride(from: 0, to: 3_000, by: 500) {
                        tickets.append(try await camera.enqueue(batch: Self.batch(start..<start + 500, qos: qos)))
                    }
                    #expect(tickets.map(\.sequences.count) == Array(repeating: 500, count: 6))
                    for ticket in tickets {
                        let results = try await ticket.results()
                        #expect(results.count == 500)
                        #expect(results.allSatisfy { (try? $0.get().isSuccess) == true })
                    }
                    let received = try await collect(detections, count: 3_000)
                    expectNumbered(received.map(\.payloadString), 0..<3_000)
                }
            }
        }
    }

    @Test("a batch is taken whole or not at all: an invalid topic or too little room refuses all of it")
    func wholeOrNothing() async throws {
        var configuration = MQTTClient.Configuration(host: "127.0.0.1", port: 1, clientIdentifier: "camera-9")
        configuration.outbox = OutboxConfiguration(maximumMessages: 10)
        let camera = MQTTClient(configuration: configuration, logger: testLogger)
        var mixed = Self.batch(0..<3, qos: .atLeastOnce)
        mixed.append(MQTTClient.OutgoingMessage(topic: "lprserver/+/detection", payload: ByteBuffer(), qos: .atLeastOnce))
        await #expect(throws: MQTTClientError.self) { try await camera.enqueue(batch: mixed) }
        #expect(await camera.outboxStatistics.messages == 0)

        _ = try await camera.enqueue(batch: Self.batch(0..<8, qos: .atLeastOnce))
        do {
            _ = try await camera.enqueue(batch: Self.batch(8..<11, qos: .atLeastOnce))
            Issue.record("a batch over the outbox limit was taken")
        } catch let error as MQTTClientError {
            #expect(error.code == .outboxFull)
        }
        #expect(await camera.outboxStatistics.messages == 8)
        _ = try await camera.enqueue(batch: Self.batch(8..<10, qos: .atLeastOnce))
        #expect(await camera.outboxStatistics.messages == 10)
    }

    @Test("a batch's ticket fails with clientStopped when the client stops first; its messages stay in the outbox")
    func stopped() async throws {
        try await Mosquitto.with { broker in
            let camera = MQTTClient(configuration: .test(broker, id: "camera-9"), logger: testLogger)
            try await camera.connect()
            broker.pause()
            let ticket = try await camera.enqueue(batch: Self.batch(0..<100, qos: .atLeastOnce))
            await camera.disconnect()
            broker.resume()
            do {
                _ = try await ticket.results()
                Issue.record("the ticket completed although no PUBACK came")
            } catch let error as MQTTClientError {
                #expect(error.code == .clientStopped)
            }
            #expect(await camera.outboxStatistics.messages == 100)
        }
    }
}

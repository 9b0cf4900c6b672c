import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Manual acknowledgement: a message the application has not acknowledged is sent again by the
/// broker when the session resumes; one it acknowledged is not.
@Suite("Manual acknowledgement against mosquitto and databus broker", .serialized, .timeLimit(.minutes(2)))
struct ManualAcknowledgementTests {
    @Test(
        "an unacknowledged QoS 1/2 message is delivered again after a lost connection; an acknowledged one is not",
        arguments: TestBrokerKind.allCases,
        [QoS.atLeastOnce, .exactlyOnce]
    )
    func unacknowledgedIsRedelivered(kind: TestBrokerKind, qos: QoS) async throws {
        try await kind.with { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "lpr-server", version: .v5)
            configuration.cleanStart = true
            configuration.sessionExpiry = .seconds(600)
            configuration.acknowledgement = .manual
            try await withClient(configuration) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/+/detection", qos: qos)
                try await withClient(.test(broker, id: "camera-1")) { camera in
                    try await camera.publish(topic: "lprserver/cameras/1/detection", payload: "first", qos: qos)
                }
                let inbox = Inbox(detections)
                let first = try #require(await inbox.message(0))
                #expect(first.payloadString == "first")
                // Not acknowledged: the connection goes, the broker keeps the message in the session.
                await server.dropConnectionForTesting()
                let again = try #require(await inbox.message(1))
                #expect(again.payloadString == "first")
                await server.acknowledge(again)

                try await withClient(.test(broker, id: "camera-1")) { camera in
                    try await camera.publish(topic: "lprserver/cameras/1/detection", payload: "second", qos: qos)
                }
                let second = try #require(await inbox.message(2))
                #expect(second.payloadString == "second")
                await server.acknowledge(second)
                // Give the acknowledgement time to reach the broker, then lose the connection again.
                try await Task.sleep(for: .milliseconds(300))
                await server.dropConnectionForTesting()
                try await withClient(.test(broker, id: "camera-1")) { camera in
                    try await camera.publish(topic: "lprserver/cameras/1/detection", payload: "third", qos: qos)
                }
                // The acknowledged "first" and "second" do not come back: the next message is "third".
                let third = try #require(await inbox.message(3))
                #expect(third.payloadString == "third")
                await server.acknowledge(third)
            }
        }
    }

    @Test("messages are not acknowledged until the application says so: the broker stops at the receive maximum")
    func receiveMaximumHoldsBackUnacknowledged() async throws {
        try await DatabusBrokerProcess.with { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "slow-consumer", version: .v5)
            configuration.acknowledgement = .manual
            configuration.receiveMaximum = 5
            try await withClient(configuration) { consumer in
                let messages = try await consumer.subscribe(to: "work/#", qos: .atLeastOnce)
                try await withClient(.test(broker, id: "producer")) { producer in
                    for index in 0..<8 {
                        _ = try await producer.enqueue(topic: "work/\(index)", payload: ByteBuffer(string: "\(index)"), qos: .atLeastOnce)
                    }
                    try await producer.publish(topic: "work/last", payload: "8", qos: .atLeastOnce)
                }
                let inbox = Inbox(messages)
                var firstFive: [MQTTMessage] = []
                for index in 0..<5 { firstFive.append(try #require(await inbox.message(index))) }
                // Nothing more comes while five are unacknowledged.
                try await Task.sleep(for: .milliseconds(500))
                #expect(inbox.count == 5)
                await consumer.acknowledge(firstFive)
                var rest: [String] = []
                for index in 5..<9 {
                    let message = try #require(await inbox.message(index))
                    rest.append(message.payloadString)
                    await consumer.acknowledge(message)
                }
                #expect(firstFive.map(\.payloadString) + rest == (0...8).map(String.init))
            }
        }
    }
}

/// Reads a message sequence in the background so a test can wait for the n-th message, or see
/// that no more came, without ending the sequence.
private final class Inbox: Sendable {
    private let received = NIOLockedValueBox<[MQTTMessage]>([])
    private let reader: Task<Void, Never>

    init(_ messages: MQTTMessages) {
        let received = self.received
        reader = Task {
            for await message in messages { received.withLockedValue { $0.append(message) } }
        }
    }

    deinit { reader.cancel() }

    var count: Int { received.withLockedValue { $0.count } }

    /// The message at `index` (from 0), waiting up to `timeout` for it; `nil` when it did not come.
    func message(_ index: Int, timeout: Duration = .seconds(10)) async -> MQTTMessage? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let message = received.withLockedValue({ index < $0.count ? $0[index] : nil }) { return message }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

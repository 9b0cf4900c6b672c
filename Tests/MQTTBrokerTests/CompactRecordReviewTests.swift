import DatabusTestSupport
import Foundation
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import MQTTBroker

#if canImport(Glibc)
import Glibc
#endif

/// A second engineer's review of the compact parked record (limits shared through
/// ``SharedValues``, the peer inline as a ``PeerAddress``, no limits or last activity in
/// ``ConnectionStateMachine/Parked``, the outlet's maximum packet size and send quota narrowed,
/// the lot's doorbell rung once per batch): what a connection agreed on at CONNECT, and what
/// the configuration gave it, must be the same after it parked as before.
@Suite("Compact parked record, review")
struct CompactRecordReviewTests {
    private static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    // MARK: Helpers

    /// Waits until `condition` holds; throws naming `what` after `seconds`.
    private func waitUntil(_ what: @autoclosure () -> String, within seconds: Double = 10, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw InteropError("after \(seconds) s: \(what())") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The broker's count of messages dropped for `reason` (`databus_messages_dropped_total`).
    private func dropped(_ broker: MQTTBroker, _ reason: DropReason) -> Int {
        let text = String(decoding: broker.prometheusText(), as: UTF8.self)
        for line in text.split(separator: "\n")
        where line.hasPrefix("databus_messages_dropped_total{") && line.contains("reason=\"\(reason.rawValue)\"") {
            return Int(Double(line.split(separator: " ").last ?? "") ?? -1)
        }
        return 0
    }

    /// A QoS 1 PUBLISH to `topic` whose whole packet, as the broker sends it to a 5.0 client
    /// (no properties), is exactly `size` bytes.
    private func payload(forPacketOf size: Int, topic: String) throws -> String {
        for length in 0..<size {
            let packet = MQTTPacket.publish(
                PublishPacket(topicName: topic, payload: ByteBuffer(repeating: 0x61, count: length), qos: .atLeastOnce, packetIdentifier: 1)
            )
            if try packet.encodedSize(version: .v5) == size { return String(repeating: "a", count: length) }
        }
        throw InteropError("no payload makes a \(size)-byte PUBLISH")
    }

    /// Receives until `count` PUBLISH packets came, acknowledging nothing; other packets are returned too.
    private func receive(_ count: Int, from client: CodecConnection, within seconds: Double = 10) async throws -> [MQTTPacket] {
        var packets: [MQTTPacket] = []
        var publishes = 0
        while publishes < count {
            let packet = try await client.receive(within: seconds)
            if case .publish = packet { publishes += 1 }
            packets.append(packet)
        }
        return packets
    }

    /// Runs `body` in a task of its own and returns whether it finished within `seconds`
    /// (a hung body is left running: the test then fails instead of hanging).
    private func finishes(within seconds: Double, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let done = NIOLockedValueBox(false)
        Task {
            await body()
            done.withLockedValue { $0 = true }
        }
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if done.withLockedValue({ $0 }) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return done.withLockedValue { $0 }
    }

    // MARK: Maximum packet size (SessionOutlet keeps it as a UInt32)

    @Test("after parking, a message one byte over a 5.0 client's maximum packet size is dropped (not waking it) and one exactly at it is sent")
    func maximumPacketSizeAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let limit = 128
            let subscriber = try await connectAccepted(port: port, "mps-sub", keepAlive: 60, properties: [.maximumPacketSize(UInt32(limit))])
            try await subscriber.subscribe("mps/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "mps-pub", keepAlive: 60)
            let fitting = try payload(forPacketOf: limit, topic: "mps/x")
            let over = fitting + "b"
            for round in 1...2 {
                try await waitParked(broker, 2)
                let droppedBefore = dropped(broker, .tooLargeForClient)
                _ = try await publisher.publish("mps/x", over, qos: .atLeastOnce, packetIdentifier: UInt16(round * 2))
                try await waitUntil("the oversized message was not counted as dropped for the client") {
                    dropped(broker, .tooLargeForClient) == droppedBefore + 1
                }
                // The drop needs nothing written: the subscriber stays in the lot.
                try await Task.sleep(for: .milliseconds(300))
                #expect(parked(broker) == 1, "round \(round): a message dropped for a parked client woke it")
                #expect(try await subscriber.roundTrip().isEmpty, "round \(round): a PUBLISH over the client's maximum packet size was sent")
                try await waitParked(broker, 2)
                _ = try await publisher.publish("mps/x", fitting, qos: .atLeastOnce, packetIdentifier: UInt16(round * 2 + 1))
                let received = try await subscriber.receivePublish()
                #expect(received.payloadString == fitting, "round \(round)")
                #expect(try MQTTPacket.publish(received).encodedSize(version: .v5) == limit)
                try await subscriber.acknowledge(received)
            }
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test("a parked 5.0 client with the largest maximum packet size (2^32 - 1) still gets a 200 KB message")
    func largestMaximumPacketSizeAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "mps-max-sub", keepAlive: 60, properties: [.maximumPacketSize(UInt32.max)])
            try await subscriber.subscribe("mpsmax/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "mps-max-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            let big = String(repeating: "z", count: 200_000)
            #expect(try await publisher.publish("mpsmax/a", big, qos: .atLeastOnce, packetIdentifier: 1) == .success)
            let received = try await subscriber.receivePublish()
            #expect(received.payload.readableBytes == 200_000)
            try await subscriber.acknowledge(received)
            #expect(dropped(broker, .tooLargeForClient) == 0)
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test("a parked 5.0 client with maximum packet size 1 is sent no PUBLISH at all, and its connection goes on")
    func maximumPacketSizeOneAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "mps-one-sub", keepAlive: 60, properties: [.maximumPacketSize(1)])
            try await subscriber.subscribe("mpsone/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "mps-one-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            try await publisher.publish("mpsone/q0", "")
            _ = try await publisher.publish("mpsone/q1", "x", qos: .atLeastOnce, packetIdentifier: 1)
            try await waitUntil("2 drops for the client, counted \(dropped(broker, .tooLargeForClient))") {
                dropped(broker, .tooLargeForClient) == 2
            }
            #expect(try await subscriber.roundTrip().isEmpty)
            // Still connected and able to publish itself.
            #expect(try await subscriber.publish("mpsone/own", "mine", qos: .atLeastOnce, packetIdentifier: 7) == .success)
            await publisher.close()
            await subscriber.close()
        }
    }

    // MARK: Receive maximum (SessionOutlet keeps the send quota as an Int32)

    @Test(
        "after parking, QoS 1 messages in flight to a 5.0 client stay within min(its receive maximum, max_inflight_messages)",
        arguments: [(clientReceiveMaximum: UInt16(3), brokerMaxInflight: 20, window: 3), (UInt16(10), 2, 2)]
    )
    func sendQuotaAcrossParking(clientReceiveMaximum: UInt16, brokerMaxInflight: Int, window: Int) async throws {
        let configure: (inout BrokerConfiguration) -> Void = { $0.maxInflightMessages = brokerMaxInflight }
        try await withParkingBroker(configure) { port, broker in
            let subscriber = try await connectAccepted(port: port, "quota-sub", keepAlive: 60, properties: [.receiveMaximum(clientReceiveMaximum)])
            try await subscriber.subscribe("quota/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "quota-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            let total = window * 2 + 1
            for number in 1...total {
                #expect(try await publisher.publish("quota/x", "q\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number)) == .success)
            }
            var received: [String] = []
            while received.count < total {
                var batch: [PublishPacket] = []
                for _ in 0..<min(window, total - received.count) { batch.append(try await subscriber.receivePublish()) }
                // The window is full: nothing more until an acknowledgement, however long it parks.
                #expect(try await subscriber.roundTrip().isEmpty, "more than \(window) in flight after \(received.count)")
                try await waitParked(broker, 2)
                #expect(try await subscriber.roundTrip().isEmpty, "more than \(window) in flight after parking")
                for publish in batch { try await subscriber.acknowledge(publish) }
                received += batch.map(\.payloadString)
            }
            #expect(received == (1...total).map { "q\($0)" })
            #expect(try await subscriber.roundTrip().isEmpty)
            await publisher.close()
            await subscriber.close()
        }
    }

    // MARK: Topic aliases (the outlet's, for messages to the client)

    @Test("a client's topic alias maximum 2 holds across parking: two topics get aliases, a third goes by name, the first is still aliased")
    func topicAliasMaximumAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "ta-sub", keepAlive: 60, properties: [.topicAliasMaximum(2)])
            try await subscriber.subscribe("ta/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "ta-pub", keepAlive: 60)
            var aliases: [String: UInt16] = [:]
            for (index, topic) in ["ta/one", "ta/two", "ta/three", "ta/one", "ta/two", "ta/three"].enumerated() {
                try await waitParked(broker, 2)
                #expect(try await publisher.publish(topic, "m\(index)", qos: .atLeastOnce, packetIdentifier: UInt16(index + 1)) == .success)
                let received = try await subscriber.receivePublish()
                #expect(received.payloadString == "m\(index)")
                switch (topic, index < 3) {
                case ("ta/three", _):
                    #expect(received.topicName == "ta/three", "a third topic must go by name")
                    #expect(received.properties.topicAlias == nil, "an alias above the client's maximum 2")
                case (_, true):
                    #expect(received.topicName == topic)
                    aliases[topic] = received.properties.topicAlias
                default:
                    #expect(received.topicName.isEmpty, "\(topic): its alias from before parking was not used")
                    #expect(received.properties.topicAlias == aliases[topic], "\(topic)")
                }
                try await subscriber.acknowledge(received)
            }
            #expect(Set(aliases.values) == [1, 2])
            await publisher.close()
            await subscriber.close()
        }
    }

    // MARK: The connection's own configuration (Parked keeps no limits)

    // The parked record no longer keeps the PublishLimits: a resumed connection recomputes them
    // from the configuration it opened with. A reload in between must not change them, as it
    // does not for a connection that never parked.
    @Test(
        "a reload lowering max_topic_alias and message_size_limit leaves a parked connection's own limits as they were; new connections get the new ones"
    )
    func reloadLeavesParkedConnectionLimits() async throws {
        var configuration = BrokerConfiguration.testing {
            $0.parkIdleConnections = 1
            $0.maxTopicAlias = 10
        }
        let broker = MQTTBroker(configuration: configuration, logger: Self.quiet)
        let port = try #require(try await broker.start().first?.port)
        do {
            let subscriber = try await connectAccepted(port: port, "cl-sub", keepAlive: 60)
            try await subscriber.subscribe("cl/#", qos: .atLeastOnce)
            let old = try await connectAccepted(port: port, "cl-old", keepAlive: 60)
            #expect(try await old.publish("cl/long/topic", "set", qos: .atLeastOnce, packetIdentifier: 1, properties: [.topicAlias(7)]) == .success)
            try await subscriber.acknowledge(try await subscriber.receivePublish())
            try await waitParked(broker, 2)
            configuration.maxTopicAlias = 2
            configuration.messageSizeLimit = 16
            _ = try await broker.reload(configuration)
            try await waitParked(broker, 2)
            let large = String(repeating: "L", count: 64)
            // Alias 7 and 64 bytes: within what this connection agreed on at CONNECT.
            let reason = try await old.publish("", large, qos: .atLeastOnce, packetIdentifier: 2, properties: [.topicAlias(7)])
            #expect(reason == .success, "a parked connection came back with the reloaded limits")
            let received = try await subscriber.receivePublish()
            #expect(received.topicName == "cl/long/topic")
            #expect(received.payloadString == large)
            try await subscriber.acknowledge(received)
            // A connection opened after the reload has the new limits.
            let (new, connack) = try await connect(port: port, "cl-new", keepAlive: 60)
            #expect(connack.properties.topicAliasMaximum == 2)
            #expect(try await new.publish("cl/new", large, qos: .atLeastOnce, packetIdentifier: 1) == .quotaExceeded)
            await new.close()
            await old.close()
            await subscriber.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    // MARK: Limits shared between sessions (SharedValues)

    @Test("a reload of max_queued_messages reaches a parked session and an offline one: each keeps exactly the new number queued")
    func reloadQueueLimitReachesParkedAndOfflineSessions() async throws {
        var configuration = BrokerConfiguration.testing {
            $0.parkIdleConnections = 1
            $0.maxQueuedMessages = 10
        }
        let broker = MQTTBroker(configuration: configuration, logger: Self.quiet)
        let port = try #require(try await broker.start().first?.port)
        do {
            // In flight: one at a time, so the rest queue.
            let parkedSubscriber = try await connectAccepted(port: port, "rq-parked", keepAlive: 60, properties: [.receiveMaximum(1)])
            try await parkedSubscriber.subscribe("rq/#", qos: .atLeastOnce)
            let offline = try await connectAccepted(port: port, "rq-offline", cleanStart: false, properties: [.sessionExpiryInterval(300)])
            try await offline.subscribe("rq/#", qos: .atLeastOnce)
            try await offline.disconnect()
            await offline.close()
            let publisher = try await connectAccepted(port: port, "rq-pub", keepAlive: 60)
            #expect(try await publisher.publish("rq/x", "m1", qos: .atLeastOnce, packetIdentifier: 1) == .success)
            let first = try await parkedSubscriber.receivePublish()
            #expect(first.payloadString == "m1")
            try await waitParked(broker, 2)
            configuration.maxQueuedMessages = 3
            _ = try await broker.reload(configuration)
            try await waitParked(broker, 2)
            for number in 2...7 {
                _ = try await publisher.publish("rq/x", "m\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
            }
            // Parked: m1 in flight, m2-m4 queued (3), the rest dropped.
            var received = [first.payloadString]
            var current = first
            while true {
                try await parkedSubscriber.acknowledge(current)
                let pending = try await parkedSubscriber.roundTrip()
                guard case .publish(let next)? = pending.first else { break }
                #expect(pending.count == 1, "more than one in flight")
                received.append(next.payloadString)
                current = next
            }
            #expect(received == ["m1", "m2", "m3", "m4"], "the parked session did not queue exactly max_queued_messages 3")
            // Offline: m1-m3 queued (3), the rest dropped.
            let back = try await connectAccepted(port: port, "rq-offline", cleanStart: false, properties: [.sessionExpiryInterval(300)])
            var offlineReceived: [String] = []
            for packet in try await back.roundTrip() {
                guard case .publish(let publish) = packet else { continue }
                offlineReceived.append(publish.payloadString)
                try await back.acknowledge(publish)
            }
            #expect(offlineReceived == ["m1", "m2", "m3"], "the offline session did not queue exactly max_queued_messages 3")
            await back.close()
            await publisher.close()
            await parkedSubscriber.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    @Test("sessions made and changed concurrently from many tasks each keep their own queue limits (the shared table hands out the right copy)")
    func sessionLimitsUnderConcurrentCreation() async throws {
        let environment = SessionEnvironment(statistics: BrokerStatistics(), store: nil, logger: Self.quiet)
        let variants = (1...6).map { Session.Limits(maxInflight: 20, maxQueuedMessages: $0 * 7, maxQueuedBytes: 0, backpressure: false) }
        let sessions = await withTaskGroup(of: [(Session, Int)].self) { group in
            for task in 0..<8 {
                group.addTask {
                    (0..<250).map { index in
                        let variant = (task + index) % variants.count
                        return (Session(clientID: "cc-\(task)-\(index)", limits: variants[variant], environment: environment), variant)
                    }
                }
            }
            var all: [(Session, Int)] = []
            for await made in group { all += made }
            return all
        }
        #expect(sessions.count == 2000)
        #expect(sessions.allSatisfy { session, variant in session.queueRoom.count == (variant + 1) * 7 })
        // Half change to another variant, concurrently; the others must not move.
        await withTaskGroup(of: Void.self) { group in
            for chunk in stride(from: 0, to: sessions.count, by: 250) {
                group.addTask {
                    for (offset, (session, variant)) in sessions[chunk..<chunk + 250].enumerated() where offset % 2 == 0 {
                        session.updateLimits(variants[(variant + 1) % variants.count])
                    }
                }
            }
        }
        // Setting the expiry makes each session work its queue limits out again from its own
        // limits: a shared copy changed in place would show here.
        await withTaskGroup(of: Void.self) { group in
            for chunk in stride(from: 0, to: sessions.count, by: 250) {
                group.addTask { for (session, _) in sessions[chunk..<chunk + 250] { session.expiryInterval = 0 } }
            }
        }
        var wrong = 0
        for chunk in stride(from: 0, to: sessions.count, by: 250) {
            for (offset, (session, variant)) in sessions[chunk..<chunk + 250].enumerated() {
                let expected = offset % 2 == 0 ? (variant + 1) % variants.count : variant
                if session.queueRoom.count != (expected + 1) * 7 { wrong += 1 }
            }
        }
        #expect(wrong == 0, "\(wrong) sessions have another session's queue limit")
    }

    @Test("a table filled concurrently past its capacity gives every caller a copy equal to its value, and shares again afterwards")
    func sharedValuesUnderConcurrency() async throws {
        let table = SharedValues<OutboundMessages.Limits>()
        let capacity = SharedValues<OutboundMessages.Limits>.capacity
        let values = (0..<(capacity * 2)).map { OutboundMessages.Limits(maxQueuedMessages: $0, maxQueuedBytes: 0, highWater: 256, lowWater: 128) }
        // The copies are kept alive until the end, so that no object's identity is reused.
        let results = await withTaskGroup(of: [(Int, SharedValue<OutboundMessages.Limits>)].self) { group in
            for task in 0..<8 {
                group.addTask {
                    (0..<values.count).map { step in
                        let index = (step * 7 + task * 13) % values.count
                        return (index, table.share(values[index]))
                    }
                }
            }
            var all: [(Int, SharedValue<OutboundMessages.Limits>)] = []
            for await made in group { all += made }
            return all
        }
        #expect(results.count == values.count * 8)
        #expect(results.allSatisfy { index, shared in shared.value == values[index] })
        // Past its capacity the table started over: a value asked for again is one object again.
        let again = table.share(values[0])
        #expect(table.share(values[0]) === again)
        #expect(again.value == values[0])
    }

    // MARK: Wills and session expiry (Connected, reordered, with its own init)

    @Test("a parked 5.0 client's will with properties and a 2 s delay is published 2 s after its connection drops, without the delay property")
    func delayedWillWithPropertiesAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "dw-watcher")
            let will = ConnectPacket.Will(
                topic: "wills/dw",
                payload: ByteBuffer(string: "{\"state\":\"gone\"}"),
                qos: .atLeastOnce,
                properties: [
                    .willDelayInterval(2), .payloadFormatIndicator(1), .messageExpiryInterval(600), .contentType("application/json"),
                    .responseTopic("cams/7/reply"), .correlationData(ByteBuffer(string: "c-7")), .userProperty("site", "north"),
                    .userProperty("site", "south"),
                ]
            )
            let camera = try await connectAccepted(port: port, "dw-cam", keepAlive: 60, will: will, properties: [.sessionExpiryInterval(60)])
            try await waitParked(broker, 2)
            let dropped = ContinuousClock.now
            await camera.close()
            try await Task.sleep(for: .milliseconds(1_300))
            #expect(try await watcher.roundTrip().isEmpty, "the will came before its 2 s delay")
            let published = try await watcher.receivePublish(within: 4)
            #expect(ContinuousClock.now - dropped >= .milliseconds(1_900))
            #expect(published.topicName == "wills/dw")
            #expect(published.payloadString == "{\"state\":\"gone\"}")
            #expect(published.properties.willDelayInterval == nil)
            #expect(published.properties.payloadFormatIndicator == 1)
            #expect(published.properties.contentType == "application/json")
            #expect(published.properties.responseTopic == "cams/7/reply")
            #expect(published.properties.correlationData == ByteBuffer(string: "c-7"))
            #expect(published.properties.userProperties.map { "\($0.name)=\($0.value)" } == ["site=north", "site=south"])
            let expiry = try #require(published.properties.messageExpiryInterval)
            #expect(expiry <= 600 && expiry >= 590)
            try await watcher.acknowledge(published)
            #expect(try await watcher.roundTrip().isEmpty, "the will came twice")
            await watcher.close()
        }
    }

    @Test("a parked client that drops and comes back within its will delay has no will published")
    func delayedWillCancelledByReconnect() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "dwc-watcher")
            let will = ConnectPacket.Will(
                topic: "wills/dwc",
                payload: ByteBuffer(string: "must not"),
                qos: .atLeastOnce,
                properties: [.willDelayInterval(2)]
            )
            let camera = try await connectAccepted(
                port: port,
                "dwc-cam",
                cleanStart: false,
                keepAlive: 60,
                will: will,
                properties: [.sessionExpiryInterval(60)]
            )
            try await waitParked(broker, 2)
            await camera.close()
            try await Task.sleep(for: .milliseconds(300))
            let (back, connack) = try await connect(port: port, "dwc-cam", cleanStart: false, keepAlive: 60, properties: [.sessionExpiryInterval(60)])
            #expect(connack.sessionPresent)
            try await Task.sleep(for: .milliseconds(2_700))
            #expect(try await watcher.roundTrip().isEmpty, "the will of a client back within its delay was published")
            try await back.disconnect()
            await back.close()
            await watcher.close()
        }
    }

    @Test("a parked client whose session expiry (1 s) is shorter than its will delay (30 s) has its will published when the session ends")
    func willAtSessionEndAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "dws-watcher")
            let will = ConnectPacket.Will(
                topic: "wills/dws",
                payload: ByteBuffer(string: "session over"),
                qos: .atLeastOnce,
                properties: [.willDelayInterval(30)]
            )
            let camera = try await connectAccepted(
                port: port,
                "dws-cam",
                cleanStart: false,
                keepAlive: 60,
                will: will,
                properties: [.sessionExpiryInterval(1)]
            )
            try await waitParked(broker, 2)
            let dropped = ContinuousClock.now
            await camera.close()
            let published = try await watcher.receivePublish(within: 5)
            #expect(published.topicName == "wills/dws")
            #expect(ContinuousClock.now - dropped >= .milliseconds(900))
            #expect(ContinuousClock.now - dropped < .seconds(5))
            try await watcher.acknowledge(published)
            let (back, connack) = try await connect(port: port, "dws-cam", cleanStart: false, properties: [.sessionExpiryInterval(1)])
            #expect(!connack.sessionPresent, "the session outlived its 1 s expiry")
            await back.close()
            await watcher.close()
        }
    }

    @Test("a parked client's 2 s session expiry holds: back within it, the session and a message queued meanwhile are there; after it, gone")
    func sessionExpiryAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let properties: Properties = [.sessionExpiryInterval(2)]
            let camera = try await connectAccepted(port: port, "se-cam", cleanStart: false, keepAlive: 60, properties: properties)
            try await camera.subscribe("se/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "se-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            await camera.close()
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await publisher.publish("se/x", "kept", qos: .atLeastOnce, packetIdentifier: 1) == .success)
            let (back, connack) = try await connect(port: port, "se-cam", cleanStart: false, keepAlive: 60, properties: properties)
            #expect(connack.sessionPresent)
            let queued = try await back.receivePublish()
            #expect(queued.payloadString == "kept")
            try await back.acknowledge(queued)
            try await waitParked(broker, 2)
            await back.close()
            try await Task.sleep(for: .milliseconds(3_500))
            let (late, lateConnack) = try await connect(port: port, "se-cam", cleanStart: false, properties: properties)
            #expect(!lateConnack.sessionPresent, "the session outlived its 2 s expiry after the parked connection dropped")
            await late.close()
            await publisher.close()
        }
    }

    @Test("a parked 5.0 client that connected with session expiry 0 and sets one in DISCONNECT is closed with 0x82")
    func disconnectSettingExpiryAfterZeroWhileParked() async throws {
        try await withParkingBroker { port, broker in
            let camera = try await connectAccepted(port: port, "dz-cam", keepAlive: 60)
            try await waitParked(broker, 1)
            try await camera.send(.disconnect(DisconnectPacket(properties: [.sessionExpiryInterval(30)])))
            #expect(try await camera.closedByBroker() == .protocolError)
            let (back, connack) = try await connect(port: port, "dz-cam", cleanStart: false)
            #expect(!connack.sessionPresent)
            await back.close()
        }
    }

    @Test("a 3.1.1 bridge's subscription made after it parked is still no-local: its own message does not come back")
    func bridgeFlagAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let bridge = try await CodecConnection.connect(port: port, version: .v3_1_1)
            var connect = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "br-remote", cleanStart: true, keepAlive: 60)
            connect.isBridge = true
            try await bridge.send(.connect(connect))
            guard case .connack(let connack) = try await bridge.receive(), connack.reasonCode == .success else {
                throw InteropError("the bridge was not accepted")
            }
            let local = try await connectAccepted(port: port, "br-local", keepAlive: 60)
            try await local.subscribe("loop/#", qos: .atLeastOnce)
            try await waitParked(broker, 2)
            try await bridge.subscribe("loop/#", qos: .atLeastOnce)
            try await waitParked(broker, 2)
            #expect(try await bridge.publish("loop/x", "from the bridge", qos: .atLeastOnce, packetIdentifier: 2) == .success)
            let onLocal = try await local.receivePublish()
            #expect(onLocal.payloadString == "from the bridge")
            try await local.acknowledge(onLocal)
            #expect(try await bridge.roundTrip().isEmpty, "a bridge's own message looped back to it")
            await local.close()
            await bridge.close()
        }
    }

    // MARK: Close requests (CloseRequest, now an object)

    @Test("a parked 5.0 client taken over twice in a row, each new connection parked in turn: 0x8E each time, the last keeps the session")
    func takeoverTwiceWhileParked() async throws {
        try await withParkingBroker { port, broker in
            let properties: Properties = [.sessionExpiryInterval(300)]
            let first = try await connectAccepted(port: port, "tt-twin", cleanStart: false, keepAlive: 60, properties: properties)
            try await first.subscribe("tt/#", qos: .atLeastOnce)
            try await waitParked(broker, 1)
            let second = try await connectAccepted(port: port, "tt-twin", cleanStart: false, keepAlive: 60, properties: properties)
            #expect(try await first.closedByBroker() == .sessionTakenOver)
            try await waitParked(broker, 1)
            let (third, connack) = try await connect(port: port, "tt-twin", cleanStart: false, keepAlive: 60, properties: properties)
            #expect(connack.sessionPresent)
            #expect(try await second.closedByBroker() == .sessionTakenOver)
            let publisher = try await connectAccepted(port: port, "tt-pub", keepAlive: 60)
            #expect(try await publisher.publish("tt/x", "to the third", qos: .atLeastOnce, packetIdentifier: 1) == .success)
            let publish = try await third.receivePublish()
            #expect(publish.payloadString == "to the third")
            try await third.acknowledge(publish)
            try await waitUntil("databus_connections is not 2") {
                metricValue("databus_connections", in: String(decoding: broker.prometheusText(), as: UTF8.self)) == 2
            }
            await first.close()
            await second.close()
            await third.close()
            await publisher.close()
        }
    }

    @Test("a parked 5.0 client with a will, taken over by a clean start: told 0x8E, and its will published once")
    func cleanStartTakeoverPublishesWillWhileParked() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "cs-watcher")
            let will = ConnectPacket.Will(
                topic: "wills/cs",
                payload: ByteBuffer(string: "replaced"),
                qos: .atLeastOnce,
                properties: [.willDelayInterval(30)]
            )
            let old = try await connectAccepted(
                port: port,
                "cs-twin",
                cleanStart: false,
                keepAlive: 60,
                will: will,
                properties: [.sessionExpiryInterval(300)]
            )
            try await waitParked(broker, 2)
            let (new, connack) = try await connect(port: port, "cs-twin", cleanStart: true, keepAlive: 60)
            #expect(!connack.sessionPresent)
            #expect(try await old.closedByBroker() == .sessionTakenOver)
            let published = try await watcher.receivePublish(within: 5)
            #expect(published.topicName == "wills/cs")
            #expect(published.payloadString == "replaced")
            try await watcher.acknowledge(published)
            #expect(try await watcher.roundTrip().isEmpty)
            await new.close()
            await old.close()
            await watcher.close()
        }
    }

    // MARK: QoS 2 to a client, interrupted by parking

    @Test("a QoS 2 message to a client with receive maximum 1 parks before its PUBREC and before its PUBCOMP, and the next one follows once")
    func outboundQoS2InterruptedByParking() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "oq2-sub", keepAlive: 60, properties: [.receiveMaximum(1)])
            try await subscriber.subscribe("oq2/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "oq2-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            #expect(try await publisher.publish("oq2/x", "first", qos: .exactlyOnce, packetIdentifier: 1) == .success)
            #expect(try await publisher.publish("oq2/x", "second", qos: .exactlyOnce, packetIdentifier: 2) == .success)
            let first = try await subscriber.receivePublish()
            #expect(first.payloadString == "first")
            let identifier = try #require(first.packetIdentifier)
            try await waitParked(broker, 2)
            try await subscriber.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            #expect(try await subscriber.receive() == .pubrel(PubRelPacket(packetIdentifier: identifier)))
            // Still in flight until PUBCOMP: the second waits.
            #expect(try await subscriber.roundTrip().isEmpty)
            try await waitParked(broker, 2)
            try await subscriber.send(.pubcomp(PubCompPacket(packetIdentifier: identifier)))
            let second = try await subscriber.receivePublish()
            #expect(second.payloadString == "second")
            #expect(!second.dup)
            try await subscriber.acknowledge(second)
            #expect(try await subscriber.roundTrip().isEmpty)
            await publisher.close()
            await subscriber.close()
        }
    }

    // MARK: Waking (the doorbell rung once per batch)

    @Test(
        "1,000 parked subscribers woken by two broadcast messages while 100 of them wake themselves with their own: each copy once, in order; then shutdown with parked and just-woken connections finishes"
    )
    func thousandConcurrentWakesThenShutdown() async throws {
        let count = 1_000
        let selfWaking = 100
        let configuration = BrokerConfiguration.testing { $0.parkIdleConnections = 1 }
        let broker = MQTTBroker(configuration: configuration, logger: Self.quiet)
        let port = try #require(try await broker.start().first?.port)
        var subscribers: [CodecConnection] = []
        do {
            subscribers = try await withThrowingTaskGroup(of: (Int, CodecConnection).self) { group in
                var result: [CodecConnection?] = Array(repeating: nil, count: count)
                var next = 0
                func add() {
                    let index = next
                    next += 1
                    group.addTask {
                        let client = try await connectAccepted(port: port, "storm-\(index)", keepAlive: 60)
                        try await client.subscribe(["storm/all", "storm/own/\(index)"], options: .init(qos: .atLeastOnce))
                        return (index, client)
                    }
                }
                while next < 25 { add() }
                while let (index, client) = try await group.next() {
                    result[index] = client
                    if next < count { add() }
                }
                return result.compactMap { $0 }
            }
            #expect(subscribers.count == count)
            let broadcaster = try await connectAccepted(port: port, "storm-pub", keepAlive: 60)
            try await waitParked(broker, count + 1, within: 60)

            // All at once: the broadcaster's two messages, and 100 subscribers' own two each.
            let clients = subscribers
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await broadcaster.send([
                        .publish(PublishPacket(topicName: "storm/all", payload: ByteBuffer(string: "all-1"), qos: .atLeastOnce, packetIdentifier: 1)),
                        .publish(PublishPacket(topicName: "storm/all", payload: ByteBuffer(string: "all-2"), qos: .atLeastOnce, packetIdentifier: 2)),
                    ])
                }
                for index in 0..<selfWaking {
                    group.addTask {
                        try await clients[index].send([
                            .publish(
                                PublishPacket(
                                    topicName: "storm/own/\(index)",
                                    payload: ByteBuffer(string: "own-1"),
                                    qos: .atLeastOnce,
                                    packetIdentifier: 101
                                )
                            ),
                            .publish(
                                PublishPacket(
                                    topicName: "storm/own/\(index)",
                                    payload: ByteBuffer(string: "own-2"),
                                    qos: .atLeastOnce,
                                    packetIdentifier: 102
                                )
                            ),
                        ])
                    }
                }
                try await group.waitForAll()
            }
            var wrong: [String] = []
            for (index, client) in subscribers.enumerated() {
                let expected = index < selfWaking ? 4 : 2
                guard let packets = try? await receive(expected, from: client) else {
                    wrong.append("storm-\(index): fewer than \(expected) messages")
                    continue
                }
                var fromBroadcaster: [String] = []
                var own: [String] = []
                var acknowledgements: [UInt16] = []
                for packet in packets {
                    switch packet {
                    case .publish(let publish):
                        if publish.topicName == "storm/all" {
                            fromBroadcaster.append(publish.payloadString)
                        } else {
                            own.append(publish.payloadString)
                        }
                        try await client.acknowledge(publish)
                    case .puback(let ack):
                        acknowledgements.append(ack.packetIdentifier)
                    default:
                        wrong.append("storm-\(index): unexpected \(packet)")
                    }
                }
                // The PUBACKs for its own messages may come after its copies.
                if index < selfWaking {
                    for packet in try await client.roundTrip() {
                        if case .puback(let ack) = packet {
                            acknowledgements.append(ack.packetIdentifier)
                        } else {
                            wrong.append("storm-\(index): extra \(packet)")
                        }
                    }
                    if own != ["own-1", "own-2"] { wrong.append("storm-\(index): own \(own)") }
                    if acknowledgements != [101, 102] { wrong.append("storm-\(index): PUBACKs \(acknowledgements)") }
                } else if let extra = try? await client.roundTrip(), !extra.isEmpty {
                    wrong.append("storm-\(index): extra \(extra)")
                }
                if fromBroadcaster != ["all-1", "all-2"] { wrong.append("storm-\(index): broadcast \(fromBroadcaster)") }
            }
            #expect(wrong.isEmpty, "\(wrong.count) subscribers wrong, first: \(wrong.prefix(5))")
            #expect(try await broadcaster.receive() == .puback(PubAckPacket(packetIdentifier: 1)))
            #expect(try await broadcaster.receive() == .puback(PubAckPacket(packetIdentifier: 2)))

            // Park again, then wake all of them and shut down at once: some are parked, some
            // queued to resume, some back on their loops.
            try await waitParked(broker, count + 1, within: 30)
            try await broadcaster.send(
                .publish(PublishPacket(topicName: "storm/all", payload: ByteBuffer(string: "last"), qos: .atLeastOnce, packetIdentifier: 3))
            )
            try await Task.sleep(for: .milliseconds(5))
            let finished = await finishes(within: 30) { await broker.shutdown() }
            #expect(finished, "shutdown() did not return within 30 s with parked and just-woken connections")
            var notClosed = 0
            var unexpected: [String] = []
            for (index, client) in subscribers.enumerated() {
                // 5 s for the first; once one is found open, the others are only looked at.
                guard let packets = try? await client.packetsUntilClosed(within: notClosed == 0 ? 5 : 0.05) else {
                    notClosed += 1
                    continue
                }
                var lasts = 0
                var disconnects = 0
                for packet in packets {
                    switch packet {
                    case .publish(let publish) where publish.payloadString == "last": lasts += 1
                    case .disconnect(let disconnect) where disconnect.reasonCode == .serverShuttingDown: disconnects += 1
                    default: unexpected.append("storm-\(index): \(packet)")
                    }
                }
                if lasts > 1 || disconnects > 1 { unexpected.append("storm-\(index): \(lasts) copies, \(disconnects) DISCONNECTs") }
            }
            #expect(notClosed == 0, "\(notClosed) connections still open 5 s after shutdown")
            #expect(unexpected.isEmpty, "\(unexpected.count) unexpected, first: \(unexpected.prefix(5))")
            for client in subscribers { await client.close() }
            await broadcaster.close()
        } catch {
            for client in subscribers { await client.close() }
            await broker.shutdown()
            throw error
        }
    }

    // MARK: The peer in the log (PeerAddress)

    /// The `peer` of the "connection lost" line logged for `client`, waiting for it up to 5 s.
    private func lostPeer(in log: CapturedLog, client: String) async throws -> String? {
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if let entry = log.entries.first(where: { $0.message == "connection lost" && $0.metadata["client"] == .string(client) }) {
                return entry.metadata["peer"].map { "\($0)" }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    @Test(
        "a client that goes away while parked is logged with its own address and port as the peer",
        arguments: [(listener: "::1", client: "::1"), ("127.0.0.1", "127.0.0.99"), ("::", "127.0.0.98")]
    )
    func parkedPeerLoggedWithPort(listener: String, client: String) async throws {
        let log = CapturedLog()
        let configuration = BrokerConfiguration.testing {
            $0.parkIdleConnections = 1
            $0.listeners = [.init(port: 0, address: listener)]
        }
        let broker = MQTTBroker(configuration: configuration, logger: log.logger)
        let port = try #require(try await broker.start().first?.port)
        let clientID = "peer-" + client.filter(\.isHexDigit)
        let socket: PlainSocket
        do {
            socket = try PlainSocket.connect(host: listener == "::" ? "127.0.0.1" : listener, port: port, from: client)
            try socket.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: clientID, keepAlive: 60)))
            guard case .connack = try await socket.receive() else { throw InteropError("no CONNACK") }
            try await waitParked(broker, 1)
        } catch {
            await broker.shutdown()
            throw error
        }
        let localPort = socket.localPort
        socket.close()
        let peer = try await lostPeer(in: log, client: clientID)
        await broker.shutdown()
        let logged = try #require(peer, "no \"connection lost\" line with a peer")
        #expect(logged.contains(client), "peer: \(logged)")
        #expect(logged.hasSuffix(":\(localPort)"), "peer: \(logged), the client's port is \(localPort)")
    }
}

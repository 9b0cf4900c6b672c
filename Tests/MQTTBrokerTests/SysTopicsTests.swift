import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// The retained `$SYS/broker/...` topics, named as mosquitto names them.
@Suite("$SYS topics")
struct SysTopicsTests {
    static let names = [
        "version", "uptime", "clients/connected", "clients/disconnected", "clients/total", "clients/maximum", "messages/received",
        "messages/sent", "publish/messages/dropped", "bytes/received", "bytes/sent", "retained messages/count", "subscriptions/count", "heap/current",
    ]

    @Test("$SYS/broker topics are published at start-up, retained, and named as mosquitto names them")
    func sysTopicsRetained() async throws {
        try await withBroker(.testing { $0.sysInterval = 3600 }) { port in
            // Wait for the start-up round, however it arrives.
            let first = try await connectAccepted(port: port, "first-monitor")
            defer { Task { await first.close() } }
            try await first.subscribe("$SYS/broker/#", qos: .atMostOnce)
            var seen: Set<String> = []
            while seen.count < Self.names.count {
                seen.insert(try await first.receivePublish().topicName)
            }
            // No other round comes within the hour: a new subscriber gets exactly the retained copies.
            let second = try await connectAccepted(port: port, "second-monitor")
            defer { Task { await second.close() } }
            try await second.subscribe("$SYS/broker/#", qos: .atMostOnce)
            var values: [String: String] = [:]
            for packet in try await second.roundTrip() {
                guard case .publish(let message) = packet else { continue }
                #expect(message.retain)
                values[message.topicName] = message.payloadString
            }
            #expect(Set(values.keys) == Set(Self.names.map { "$SYS/broker/\($0)" }))
            #expect(values["$SYS/broker/uptime"]?.hasSuffix(" seconds") == true)
        }
    }

    @Test("$SYS/broker/clients/connected counts connected clients every sys_interval")
    func sysTopicsUpdated() async throws {
        try await withBroker(.testing { $0.sysInterval = 1 }) { port in
            let monitor = try await connectAccepted(port: port, "monitor")
            defer { Task { await monitor.close() } }
            let other = try await connectAccepted(port: port, "other")
            defer { Task { await other.close() } }
            try await monitor.subscribe("$SYS/broker/clients/connected", qos: .atMostOnce)
            let deadline = ContinuousClock.now + .seconds(10)
            var connected: String?
            while connected != "2", ContinuousClock.now < deadline {
                connected = try await monitor.receivePublish(within: 10).payloadString
            }
            #expect(connected == "2")
        }
    }

    @Test("a client cannot publish to $SYS topics")
    func clientsCannotPublishSys() async throws {
        try await withBroker { port in
            let monitor = try await connectAccepted(port: port, "monitor")
            defer { Task { await monitor.close() } }
            try await monitor.subscribe("$SYS/#", qos: .atMostOnce)
            let impostor = try await connectAccepted(port: port, "impostor")
            defer { Task { await impostor.close() } }
            try await impostor.publish("$SYS/broker/version", "fake", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            try await monitor.expectNothingPending("a client's $SYS message was forwarded")
        }
    }
}

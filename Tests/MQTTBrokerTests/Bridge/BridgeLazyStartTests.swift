import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

/// `start_type lazy` against a real remote broker: the bridge stays away until `threshold`
/// messages wait, forwards them in order, and leaves after `idle_timeout` without traffic.
@Suite("Bridge start_type lazy with a real peer", .serialized)
struct BridgeLazyStartTests {
    @Test("lazy: nothing goes out below the threshold; at the threshold all of it does, in order; idle_timeout closes; bridge_outgoing_retain false")
    func lazyBridge() async throws {
        try await Mosquitto.with { central in
            let atCentral = try await connectAccepted(port: central.port, "central-sub", version: .v3_1_1)
            try await atCentral.subscribe("site7/lpr/#", qos: .atLeastOnce)
            try await withDatabusBroker(
                """
                persistence true
                persistence_location {DIRECTORY}/store
                connection central
                address 127.0.0.1:\(central.port)
                notification_topic bridges/edge-7/state
                start_type lazy
                threshold 5
                idle_timeout 2
                bridge_outgoing_retain false
                topic lpr/# out 1 "" site7/
                """
            ) { edge in
                let camera = try await connectAccepted(port: edge.port, "camera-1", version: .v3_1_1)
                try await camera.publish("lpr/cam1/last", "d1", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
                for number in 2...4 {
                    try await camera.publish("lpr/cam1", "d\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
                }
                // Four wait: below the threshold the bridge does not connect.
                let early = try await atCentral.collectPublishes(quiet: 3)
                #expect(early.isEmpty, "forwarded below the threshold: \(early.map(Seen.init))")

                try await camera.publish("lpr/cam1", "d5", qos: .atLeastOnce, packetIdentifier: 5)
                var forwarded = try await atCentral.collectPublishes(count: 5, within: 20)
                forwarded += try await atCentral.collectPublishes(quiet: 1)
                // The retained message may come twice: queued, and sent again at connection as
                // mosquitto sends the retained messages of out topics at every connection.
                let expected =
                    [Seen("site7/lpr/cam1/last", "d1", qos: .atLeastOnce)] + (2...5).map { Seen("site7/lpr/cam1", "d\($0)", qos: .atLeastOnce) }
                #expect(Set(forwarded.map(Seen.init)) == Set(expected))
                #expect(forwarded.filter { $0.topicName == "site7/lpr/cam1" }.map(\.payloadString) == ["d2", "d3", "d4", "d5"])

                // bridge_outgoing_retain false: the retained message is not retained there.
                let late = try await connectAccepted(port: central.port, "late-sub", version: .v3_1_1)
                try await late.subscribe("site7/lpr/#", qos: .atLeastOnce)
                let retained = try await late.collectPublishes(quiet: 1)
                #expect(retained.isEmpty, "retained at the central broker: \(retained.map(Seen.init))")

                // Idle for idle_timeout: the bridge closes cleanly, telling the central broker "0".
                try await waitForRetained(port: central.port, topic: "bridges/edge-7/state", payload: "0", within: 20)
                for connection in [camera, late] { await connection.close() }
            }
            await atCentral.close()
        }
    }
}

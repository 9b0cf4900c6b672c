import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// Keep alive: PINGREQ when idle, and a dead connection detected by the missing PINGRESP.
@Suite("Keep alive", .serialized, .timeLimit(.minutes(2)))
struct KeepAliveTests {
    @Test("an idle connection stays up: PINGREQ goes out within the keep alive that the broker enforces", arguments: TestBrokerKind.allCases)
    func idleConnectionStaysUp(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            // Real time here: brokers close a connection idle for 1.5 keep alives (1.5 s).
            var configuration = MQTTClient.Configuration.test(broker, id: "idle-camera")
            configuration.keepAlive = .seconds(1)
            configuration.pingTimeout = .seconds(1)
            try await withClient(configuration) { camera in
                let states = camera.states
                let watcher = Task {
                    var seen: [ConnectionState] = []
                    for await state in states {
                        seen.append(state)
                        if state == .stopped && seen.count > 1 { break }
                    }
                    return seen
                }
                try await Task.sleep(for: .seconds(3))
                let result = try await camera.publish(topic: "still/here", payload: "yes", qos: .atLeastOnce)
                #expect(result.isSuccess)
                await camera.disconnect()
                let seen = await watcher.value
                // Connected once, never lost in between.
                #expect(seen.filter(\.isConnected).count == 1)
                #expect(!seen.contains { if case .disconnected(let reason) = $0 { reason != .clientDisconnected } else { false } })
            }
        }
    }

    @Test("a broker that stops answering is detected by the ping timeout and the client backs off")
    func deadConnectionDetected() async throws {
        try await Mosquitto.with { broker in
            let clock = ManualClock()
            var configuration = MQTTClient.Configuration.test(broker, id: "camera-5")
            configuration.keepAlive = .seconds(2)
            configuration.pingTimeout = .seconds(1)
            try await withClient(configuration, clock: clock) { camera in
                let states = camera.states
                broker.pause()
                defer { broker.resume() }
                let detected = Task { try await waitForState(states) { $0 == .disconnected(.keepAliveTimeout) } }
                // Tick 1 s: idle, so PINGREQ goes out. Tick 2 s: no PINGRESP within 1 s.
                for _ in 0..<10 where !detected.isCancelled {
                    try await clock.waitForSleepers(1)
                    clock.advance(by: .seconds(1))
                    try await Task.sleep(for: .milliseconds(20))
                    if camera.state != .connected(sessionPresent: false) { break }
                }
                let state = try await detected.value
                #expect(state == .disconnected(.keepAliveTimeout))
                try await waitForState(states) { $0.isBackingOff }
            }
        }
    }
}

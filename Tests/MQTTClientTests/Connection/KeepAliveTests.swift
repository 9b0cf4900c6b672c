import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// Keep alive: PINGREQ when idle, and a dead connection detected by the missing PINGRESP.
@Suite("Keep alive against mosquitto", .serialized)
struct KeepAliveTests {
    @Test("an idle connection stays up on PINGREQ/PINGRESP")
    func idleConnectionStaysUp() async throws {
        try await Mosquitto.with { broker in
            let clock = ManualClock()
            var configuration = MQTTClient.Configuration.test(broker, id: "idle-camera")
            configuration.keepAlive = .seconds(10)
            try await withClient(configuration, clock: clock) { camera in
                // Ten keep-alive periods of client time; each tick that sends PINGREQ gets PINGRESP.
                for _ in 0..<20 {
                    try await clock.waitForSleepers(1)
                    clock.advance(by: .seconds(5))
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(camera.state == .connected(sessionPresent: false))
                let result = try await camera.publish(topic: "still/here", payload: "yes", qos: .atLeastOnce)
                #expect(result.isSuccess)
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

import DatabusTestSupport
import Logging
import MQTTClient
import MQTTCore
import NIOCore
import ServiceLifecycle
import Testing

/// The client as a swift-service-lifecycle `Service`.
@Suite("Client as a Service", .serialized, .timeLimit(.minutes(2)))
struct ServiceTests {
    @Test("in a ServiceGroup the client connects, and graceful shutdown disconnects it cleanly", arguments: TestBrokerKind.allCases)
    func serviceGroup(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "lpr-server")) { observer in
                let availability = try await observer.subscribe(to: "lprserver/cameras/+/availability", qos: .atLeastOnce)
                var configuration = MQTTClient.Configuration.test(broker, id: "camera-12")
                configuration.will = ConnectPacket.Will(topic: "lprserver/cameras/12/availability", payload: ByteBuffer(string: "offline"))
                let camera = MQTTClient(configuration: configuration, logger: testLogger)
                let states = camera.states
                let group = ServiceGroup(services: [camera], logger: testLogger)
                let running = Task { try await group.run() }
                try await waitForState(states) { $0.isConnected }
                try await camera.publish(topic: "lprserver/cameras/12/availability", payload: "online", qos: .atLeastOnce)

                await group.triggerGracefulShutdown()
                try await running.value
                #expect(camera.state == .stopped)
                // A clean DISCONNECT: no will. The marker shows nothing else came before it.
                try await observer.publish(topic: "lprserver/cameras/0/availability", payload: "marker", qos: .atLeastOnce)
                let received = try await collect(availability, count: 2)
                #expect(received.map(\.payloadString) == ["online", "marker"])
            }
        }
    }
}

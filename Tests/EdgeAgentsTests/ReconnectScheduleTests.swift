import DatabusTestSupport
import EdgeAgents
import Foundation
import Logging
import MQTTClient
import Testing

/// The agents' reconnect schedule, timed by a manual clock so nothing waits for real time.
@Suite("Edge agents reconnect 1, 2, 4 ... 30, 30 s", .serialized, .timeLimit(.minutes(2)))
struct ReconnectScheduleTests {
    static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Advances the clock through `count` backoff delays of `client`, returning them.
    static func delays(of client: MQTTClient, clock: ManualClock, count: Int) async throws -> [Duration] {
        var iterator = client.states.makeAsyncIterator()
        var delays: [Duration] = []
        while delays.count < count, let state = await iterator.next() {
            guard case .backingOff(let delay) = state else { continue }
            delays.append(delay)
            try await clock.waitForSleepers(1)
            clock.advance(by: delay)
        }
        return delays
    }

    static let expected: [Duration] = [1, 2, 4, 8, 16, 30, 30, 30].map { .seconds($0) }

    @Test("databus pipeline: 1, 2, 4, 8, 16, 30, 30, 30 s while the broker is unreachable, and the input still flows")
    func pipeline() async throws {
        let clock = ManualClock()
        let options = PipelinePublisher.Options(host: "127.0.0.1", port: try await Mosquitto.freePort(), queueMessages: 3)
        let publisher = try PipelinePublisher(
            configuration: PipelineConfiguration(qos: .atLeastOnce),
            options: options,
            clock: clock,
            logger: Self.quiet
        )
        let (lines, input) = AsyncStream<String>.makeStream()
        let run = Task { try await publisher.run(metadata: lines, frames: nil) }
        for id in 0..<10 { input.yield(#"{"frame_id":\#(id)}"#) }
        let delays = try await Self.delays(of: publisher.client, clock: clock, count: 8)
        #expect(delays == Self.expected)
        // Nothing blocked: all ten lines were read, and the queue of three dropped the oldest seven.
        #expect(publisher.statistics.framesRead == 10)
        #expect(publisher.statistics.dropped == 7)
        input.finish()
        run.cancel()
        await publisher.client.disconnect()
        _ = try? await run.value
    }

    @Test("databus gateway: 1, 2, 4, 8, 16, 30, 30, 30 s while the broker is unreachable")
    func gateway() async throws {
        let clock = ManualClock()
        let options = Gateway.Options(
            brokerHost: "127.0.0.1",
            brokerPort: try await Mosquitto.freePort(),
            webPort: try await Mosquitto.freePort(),
            tls: nil,
            httpTimeout: .milliseconds(200),
            version: "test",
            healthFile: nil
        )
        let gateway = Gateway(options: options, clock: clock, logger: Self.quiet)
        let run = Task { try await gateway.run() }
        let delays = try await Self.delays(of: gateway.client, clock: clock, count: 8)
        #expect(delays == Self.expected)
        run.cancel()
        _ = try? await run.value
    }
}

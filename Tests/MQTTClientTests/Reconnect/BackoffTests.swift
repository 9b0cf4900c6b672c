import DatabusTestSupport
import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

/// Reconnect backoff, timed by a manual clock so nothing waits for real time.
@Suite("Reconnect backoff", .serialized, .timeLimit(.minutes(2)))
struct BackoffTests {
    /// A configuration for a port where nothing listens: every attempt is refused at once.
    static func unreachable(_ policy: ReconnectPolicy) async throws -> MQTTClient.Configuration {
        var configuration = MQTTClient.Configuration(host: "127.0.0.1", port: try await Mosquitto.freePort(), clientIdentifier: "camera-7")
        configuration.reconnect = policy
        return configuration
    }

    /// Runs the client and advances the clock through `count` backoff delays, returning them.
    static func delays(_ client: MQTTClient, clock: ManualClock, count: Int) async throws -> [Duration] {
        let states = client.states
        let run = Task { try await client.runUntilStopped() }
        defer { run.cancel() }
        var iterator = states.makeAsyncIterator()
        var delays: [Duration] = []
        while delays.count < count, let state = await iterator.next() {
            guard case .backingOff(let delay) = state else { continue }
            delays.append(delay)
            try await clock.waitForSleepers(1)
            clock.advance(by: delay)
        }
        await client.disconnect()
        return delays
    }

    @Test("without jitter the delay starts at 1 s and doubles up to 30 s")
    func exponentialDelays() async throws {
        let clock = ManualClock()
        let client = MQTTClient(configuration: try await Self.unreachable(ReconnectPolicy(jitter: .none)), clock: clock, logger: testLogger)
        let delays = try await Self.delays(client, clock: clock, count: 8)
        #expect(delays == [1, 2, 4, 8, 16, 30, 30, 30].map { Duration.seconds($0) })
        // The client slept exactly those delays on the injected clock.
        #expect(clock.requestedSleeps.prefix(8) == delays[...])
    }

    @Test("full jitter draws each delay between zero and the doubling cap")
    func fullJitter() async throws {
        let clock = ManualClock()
        let policy = ReconnectPolicy(initialDelay: .milliseconds(500), maximumDelay: .seconds(10))
        let client = MQTTClient(configuration: try await Self.unreachable(policy), clock: clock, logger: testLogger)
        let delays = try await Self.delays(client, clock: clock, count: 12)
        let caps = (0..<12).map { policy.delayCap(attempt: $0) }
        #expect(caps.prefix(6) == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10)])
        for (delay, cap) in zip(delays, caps) {
            #expect(delay >= .zero && delay <= cap, "delay \(delay) outside 0...\(cap)")
        }
        // Twelve draws all at the cap would mean there is no jitter.
        #expect(zip(delays, caps).contains { $0 != $1 })
    }

    @Test("the client stops after the maximum number of attempts and says so")
    func maximumAttempts() async throws {
        let clock = ManualClock()
        let configuration = try await Self.unreachable(ReconnectPolicy(maximumAttempts: 3, jitter: .none))
        let client = MQTTClient(configuration: configuration, clock: clock, logger: testLogger)
        let states = client.states
        let run = Task { try await client.runUntilStopped() }
        var seen: [ConnectionState] = []
        for await state in states {
            seen.append(state)
            if case .backingOff(let delay) = state {
                try await clock.waitForSleepers(1)
                clock.advance(by: delay)
            }
            if state == .stopped && seen.count > 1 { break }
        }
        do {
            try await run.value
            Issue.record("runUntilStopped returned normally")
        } catch let error as MQTTClientError {
            #expect(error.code == .reconnectAttemptsExhausted)
        }
        // One first attempt plus three reconnect attempts, with three delays between them.
        #expect(seen.filter { $0 == .connecting }.count == 4)
        let delays = seen.compactMap { state -> Duration? in if case .backingOff(let delay) = state { delay } else { nil } }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4)])
    }

    @Test("a successful connection resets the delay, and the client reconnects when the broker returns", arguments: TestBrokerKind.allCases)
    func resetAfterSuccess(kind: TestBrokerKind) async throws {
        let clock = ManualClock()
        try await kind.with { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "camera-8")
            configuration.reconnect = ReconnectPolicy(jitter: .none)
            let client = MQTTClient(configuration: configuration, clock: clock, logger: testLogger)
            let states = client.states
            try await client.connect()
            var iterator = states.makeAsyncIterator()
            var delays: [Duration] = []
            await broker.terminate()
            // Two refused attempts while the broker is down: 1 s, then 2 s.
            while delays.count < 2, let state = await iterator.next() {
                guard case .backingOff(let delay) = state else { continue }
                delays.append(delay)
                try await clock.waitForSleepers(1)
                if delays.count == 2 { try await broker.restart() }
                clock.advance(by: delay)
            }
            while let state = await iterator.next(), !state.isConnected {}
            #expect(delays == [.seconds(1), .seconds(2)])
            // Lost again: the first delay is the initial one again.
            await broker.terminate()
            while let state = await iterator.next() {
                if case .backingOff(let delay) = state {
                    #expect(delay == .seconds(1))
                    break
                }
            }
            await client.disconnect()
        }
    }
}

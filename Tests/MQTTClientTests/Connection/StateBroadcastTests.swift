import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import MQTTClient

/// The client's state sequences (``MQTTClient/states``) while the state changes on an event
/// loop and the tasks reading them are cancelled: once, an event loop setting the state and a
/// task being cancelled waited for each other's lock for ever (a `databus` test run hung on it).
@Suite("State sequences")
struct StateBroadcastTests {
    @Test("sequences cancelled while another thread keeps setting the state: no deadlock, and every state arrives in order")
    func cancelledWhileSet() async throws {
        let broadcast = StateBroadcast()
        let stop = NIOLockedValueBox(false)
        let sets = NIOLockedValueBox(0)
        let setter = Thread {
            var count = 0
            while !stop.withLockedValue({ $0 }) {
                broadcast.set(.connecting)
                broadcast.set(.connected(sessionPresent: false))
                count += 2
            }
            sets.withLockedValue { $0 = count }
        }
        setter.start()
        let rounds = NIOLockedValueBox(0)
        let work = Task {
            for _ in 0..<3_000 {
                let stream = broadcast.makeStream()
                let reader = Task {
                    var previous: ConnectionState?
                    for await state in stream {
                        // The setter alternates the two states: no state twice in a row.
                        if let previous, previous == state, state != .stopped { return false }
                        previous = state
                    }
                    return true
                }
                await Task.yield()
                reader.cancel()
                let inOrder = await reader.value
                #expect(inOrder)
                rounds.withLockedValue { $0 += 1 }
            }
        }
        // A deadlock never ends `work`: wait for it with a deadline instead of awaiting it.
        let deadline = ContinuousClock.now + .seconds(60)
        while rounds.withLockedValue({ $0 }) < 3_000 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        stop.withLockedValue { $0 = true }
        let finished = rounds.withLockedValue { $0 }
        #expect(finished == 3_000, "only \(finished) of 3,000 sequences ended: a thread is stuck")
        if finished == 3_000 { await work.value }
        while sets.withLockedValue({ $0 }) == 0 && ContinuousClock.now < deadline + .seconds(5) {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(sets.withLockedValue { $0 } > 0)
    }
}

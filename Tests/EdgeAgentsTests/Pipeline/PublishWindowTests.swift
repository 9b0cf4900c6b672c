import NIOConcurrencyHelpers
import Testing

@testable import EdgeAgents

@Suite("The pipeline's publish window")
struct PublishWindowTests {
    @Test("while connected the input waits once the window is full, and goes on when a place is released")
    func waitsWhenFull() async throws {
        let window = PublishWindow(limit: 2)
        await window.acquire()
        await window.acquire()
        let third = NIOLockedValueBox(false)
        let waiting = Task {
            await window.acquire()
            third.withLockedValue { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(third.withLockedValue { $0 } == false)
        window.release()
        await waiting.value
        #expect(third.withLockedValue { $0 } == true)
    }

    @Test("while disconnected the window is open: nothing waits, so the input never blocks on an outage")
    func openWhileDisconnected() async throws {
        let window = PublishWindow(limit: 1)
        await window.acquire()
        let waiting = Task { await window.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        window.setOpen(true)
        await waiting.value
        for _ in 0..<100 { await window.acquire() }
        window.setOpen(false)
        let closed = NIOLockedValueBox(false)
        let blocked = Task {
            await window.acquire()
            closed.withLockedValue { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(closed.withLockedValue { $0 } == false)
        for _ in 0..<102 { window.release() }
        await blocked.value
        #expect(closed.withLockedValue { $0 } == true)
    }
}

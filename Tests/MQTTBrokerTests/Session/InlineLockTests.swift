import Foundation
import Testing

@testable import MQTTBroker

/// A counter guarded the way Session and SessionOutlet guard their state.
private final class GuardedCounter: @unchecked Sendable {
    private let lock = InlineLock()
    private var value = 0
    private var inside = false
    private var overlapsSeen = 0

    /// Increments under the lock; false when another thread was inside at the same time.
    @discardableResult
    func increment() -> Bool {
        lock.withLock {
            let overlapped = inside
            inside = true
            value += 1
            if overlapped { overlapsSeen += 1 }
            inside = false
            return !overlapped
        }
    }

    var total: Int { lock.withLock { value } }
    var overlaps: Int { lock.withLock { overlapsSeen } }

    func failing() throws -> Int {
        try lock.withLock { throw CancellationError() }
    }
}

@Suite("InlineLock")
struct InlineLockTests {
    @Test("threads take turns: no increment is lost and no two are inside at once")
    func mutualExclusion() {
        let counter = GuardedCounter()
        let threads = 4
        let perThread = 200_000
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for _ in 0..<perThread { counter.increment() }
        }
        #expect(counter.total == threads * perThread)
        #expect(counter.overlaps == 0)
    }

    @Test("an error thrown inside leaves the lock free")
    func throwingReleases() {
        let counter = GuardedCounter()
        #expect(throws: CancellationError.self) { try counter.failing() }
        #expect(counter.increment())
        #expect(counter.total == 1)
    }
}

import Synchronization

/// A mutual-exclusion lock stored inside its owner (four bytes) rather than in an object of
/// its own (`NIOLock` costs every session and connection a separate allocation of about 70
/// bytes). It guards the owner's other stored properties, as `NIOLock` does.
struct InlineLock: ~Copyable, @unchecked Sendable {
    private let mutex = Mutex(())

    init() {}

    @inline(__always)
    func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        try mutex.withLock { _ in try body() }
    }
}

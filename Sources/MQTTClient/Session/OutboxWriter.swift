import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes outbox changes to an ``OutboxPersistence`` on a thread of its own, many at a time.
///
/// Group commit: changes handed over while a transaction runs wait for the next one, which
/// takes all of them. A waiter is released by the first commit that covers its changes, and
/// a commit someone waits for starts as soon as the previous one ends: it waits for no timer
/// and for no changes handed over after its own. Changes nobody waits for (removals of
/// acknowledged messages) gather for up to ``gatheringTime`` first. Loads run on the same thread after the changes handed
/// over before them are stored, so they see those changes.
final class OutboxWriter: Sendable {
    typealias Submission = UInt64

    private struct FailedRange {
        let submissions: ClosedRange<Submission>
        let error: String
    }

    private struct State {
        var pending = OutboxChanges()
        /// The number of the last submission handed over.
        var submitted: Submission = 0
        /// The number of the last submission in a finished transaction.
        var finished: Submission = 0
        /// Recent transactions that failed, for waiters that come late.
        var failed: [FailedRange] = []
        /// Failures not yet taken by ``takeFailures()``, to be logged.
        var unreported: [String] = []
        var waiters: [(submission: Submission, continuation: CheckedContinuation<Void, any Error>)] = []
        var loads: [@Sendable () -> Void] = []
        var running = false
    }

    let persistence: any OutboxPersistence
    private let state = NIOLockedValueBox(State())
    private let queue = DispatchQueue(label: "databus.mqtt-client.outbox-writer")

    init(persistence: any OutboxPersistence) {
        self.persistence = persistence
    }

    /// Hands changes over; returns the submission number to wait for with ``waitUntilStored(_:)``.
    @discardableResult
    func submit(_ changes: OutboxChanges) -> Submission {
        let (number, start) = state.withLockedValue { state -> (Submission, Bool) in
            state.pending.merge(changes)
            state.submitted += 1
            defer { state.running = true }
            return (state.submitted, !state.running)
        }
        if start { queue.async { self.drain() } }
        return number
    }

    /// The number of the last submission handed over.
    var lastSubmission: Submission { state.withLockedValue { $0.submitted } }

    /// Returns once the transaction holding `submission` has committed.
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/persistenceFailed`` when it failed.
    func waitUntilStored(_ submission: Submission) async throws(MQTTClientError) {
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome: Result<Void, any Error>? = state.withLockedValue { state in
                    if let failure = state.failed.first(where: { $0.submissions.contains(submission) }) {
                        return .failure(Self.error(failure.error))
                    }
                    if submission <= state.finished { return .success(()) }
                    state.waiters.append((submission, continuation))
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } catch let error as MQTTClientError {
            throw error
        } catch {
            throw Self.error("\(error)")
        }
    }

    /// Runs `body` on the writer's thread once every change handed over before is stored.
    func load<T: Sendable>(_ body: @escaping @Sendable (any OutboxPersistence) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let persistence = self.persistence
            let start = state.withLockedValue { state -> Bool in
                state.loads.append { continuation.resume(with: Result { try body(persistence) }) }
                defer { state.running = true }
                return !state.running
            }
            if start { queue.async { self.drain() } }
        }
    }

    /// Transactions that failed since the last call, for the client to log.
    func takeFailures() -> [String] {
        state.withLockedValue { state in
            defer { state.unreported.removeAll() }
            return state.unreported
        }
    }

    private static func error(_ description: String) -> MQTTClientError {
        MQTTClientError(.persistenceFailed, "could not store the message in the outbox: \(description)")
    }

    /// How long, at most, changes that nobody waits for gather before a transaction.
    static let gatheringTime = Duration.milliseconds(2)

    /// Lets changes that nobody waits for (removals of acknowledged messages, states of QoS 1
    /// messages sent) gather for a moment, so that a fast drain stores hundreds of them per
    /// transaction instead of a few: every transaction writes each page it touches again. New
    /// messages, a waiter or a load end the wait at once, so no caller waits for it.
    private func gatherUnwaitedChanges() {
        let slice = 250
        for _ in 0..<Int(Self.gatheringTime / .microseconds(slice)) {
            let urgent = state.withLockedValue { state in
                state.pending.isEmpty || !state.pending.appended.isEmpty || !state.waiters.isEmpty || !state.loads.isEmpty
            }
            if urgent { return }
            usleep(UInt32(slice))
        }
    }

    private func drain() {
        while true {
            gatherUnwaitedChanges()
            let taken = state.withLockedValue { state -> (changes: OutboxChanges, through: Submission, loads: [@Sendable () -> Void])? in
                guard !state.pending.isEmpty || !state.loads.isEmpty || state.submitted != state.finished else {
                    state.running = false
                    return nil
                }
                defer {
                    state.pending = OutboxChanges()
                    state.loads = []
                }
                return (state.pending, state.submitted, state.loads)
            }
            guard let taken else { return }
            var failure: String?
            if !taken.changes.isEmpty {
                do {
                    try persistence.apply(taken.changes.coalesced())
                } catch {
                    failure = "\(error)"
                }
            }
            let released = state.withLockedValue { state -> [(CheckedContinuation<Void, any Error>, Result<Void, any Error>)] in
                let first = state.finished + 1
                state.finished = taken.through
                if let failure, first <= taken.through {
                    state.failed.append(FailedRange(submissions: first...taken.through, error: failure))
                    if state.failed.count > 16 { state.failed.removeFirst() }
                    state.unreported.append(failure)
                }
                var released: [(CheckedContinuation<Void, any Error>, Result<Void, any Error>)] = []
                state.waiters.removeAll { waiter in
                    guard waiter.submission <= taken.through else { return false }
                    if let failure, waiter.submission >= first {
                        released.append((waiter.continuation, .failure(Self.error(failure))))
                    } else {
                        released.append((waiter.continuation, .success(())))
                    }
                    return true
                }
                return released
            }
            for (continuation, result) in released { continuation.resume(with: result) }
            for load in taken.loads { load() }
        }
    }
}

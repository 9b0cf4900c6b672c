import NIOConcurrencyHelpers

/// A value that arrives once and can be awaited by any number of tasks, before or after it arrives.
final class AsyncPromise<Value: Sendable>: Sendable {
    private enum State {
        case pending([UInt64: CheckedContinuation<Value, any Error>], nextWaiter: UInt64)
        case done(Result<Value, any Error>)
    }

    private let state = NIOLockedValueBox(State.pending([:], nextWaiter: 0))

    func succeed(_ value: Value) { complete(.success(value)) }
    func fail(_ error: any Error) { complete(.failure(error)) }

    /// Completes the promise; later completions are ignored.
    func complete(_ result: Result<Value, any Error>) {
        let waiters: [CheckedContinuation<Value, any Error>] = state.withLockedValue { state in
            guard case .pending(let waiters, _) = state else { return [] }
            state = .done(result)
            return Array(waiters.values)
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    var isCompleted: Bool {
        state.withLockedValue { if case .done = $0 { true } else { false } }
    }

    /// Waits for the value; throws `CancellationError` if the waiting task is cancelled first
    /// (the promise itself is not affected).
    func value() async throws -> Value {
        let waiterID: UInt64? = state.withLockedValue { state in
            guard case .pending(let waiters, let next) = state else { return nil }
            state = .pending(waiters, nextWaiter: next + 1)
            return next
        }
        guard let waiterID else { return try result()!.get() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let immediate: Result<Value, any Error>? = state.withLockedValue { state in
                    switch state {
                    case .done(let result):
                        return result
                    case .pending(var waiters, let next):
                        if Task.isCancelled { return .failure(CancellationError()) }
                        waiters[waiterID] = continuation
                        state = .pending(waiters, nextWaiter: next)
                        return nil
                    }
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Value, any Error>? = state.withLockedValue { state in
                guard case .pending(var waiters, let next) = state, let waiter = waiters.removeValue(forKey: waiterID) else { return nil }
                state = .pending(waiters, nextWaiter: next)
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Waits for the value, whether or not the waiting task is cancelled.
    func valueIgnoringCancellation() async throws -> Value {
        if let done = result() { return try done.get() }
        return try await withCheckedThrowingContinuation { continuation in
            let immediate: Result<Value, any Error>? = state.withLockedValue { state in
                switch state {
                case .done(let result):
                    return result
                case .pending(var waiters, let next):
                    waiters[next] = continuation
                    state = .pending(waiters, nextWaiter: next + 1)
                    return nil
                }
            }
            if let immediate { continuation.resume(with: immediate) }
        }
    }

    private func result() -> Result<Value, any Error>? {
        state.withLockedValue { if case .done(let result) = $0 { result } else { nil } }
    }
}

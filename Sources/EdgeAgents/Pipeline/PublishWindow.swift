import NIOConcurrencyHelpers

/// How many messages may wait for the broker before the input waits too: the limit holds while
/// connected (the network sets the pace), and lifts while disconnected, when the bounded queue
/// takes everything and drops its oldest, so that the input never blocks on an outage.
final class PublishWindow: Sendable {
    private struct State {
        var inFlight = 0
        var limit: Int
        var isOpen = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: NIOLockedValueBox<State>

    init(limit: Int) {
        state = NIOLockedValueBox(State(limit: max(1, limit)))
    }

    /// Takes a place, waiting while the window is full and closed.
    func acquire() async {
        let acquired = state.withLockedValue { state in
            guard state.isOpen || state.inFlight < state.limit else { return false }
            state.inFlight += 1
            return true
        }
        if acquired { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { state in
                guard state.isOpen || state.inFlight < state.limit else {
                    state.waiters.append(continuation)
                    return false
                }
                state.inFlight += 1
                return true
            }
            if now { continuation.resume() }
        }
    }

    /// Gives a place back.
    func release() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLockedValue { state in
            state.inFlight -= 1
            guard !state.waiters.isEmpty, state.isOpen || state.inFlight < state.limit else { return nil }
            state.inFlight += 1
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }

    /// Lifts the limit (`true`: disconnected, or shutting down) or sets it again.
    func setOpen(_ open: Bool) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLockedValue { state in
            state.isOpen = open
            guard open else { return [] }
            let waiters = state.waiters
            state.inFlight += waiters.count
            state.waiters = []
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

import DequeModule
import NIOConcurrencyHelpers

/// A queue between a producer and a consumer that takes everything waiting at once: while the
/// consumer stores one batch, the next collects, so batches grow with the load (group commit).
final class BatchQueue<Element: Sendable>: Sendable {
    private struct State {
        var items = Deque<Element>()
        var waiter: CheckedContinuation<Void, Never>?
        var finished = false
    }

    private let state = NIOLockedValueBox(State())

    /// How many items wait.
    var count: Int { state.withLockedValue { $0.items.count } }

    func append(_ item: Element) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            state.items.append(item)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// No more items: the consumer gets what is left, then `nil`.
    func finish() {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Up to `maximum` items, waiting for at least one; `nil` once finished and empty.
    func next(maximum: Int) async -> [Element]? {
        while true {
            let taken: [Element]? = state.withLockedValue { state in
                if state.items.isEmpty { return state.finished ? [] : nil }
                let count = min(maximum, state.items.count)
                let batch = Array(state.items.prefix(count))
                state.items.removeFirst(count)
                return batch
            }
            if let taken { return taken.isEmpty ? nil : taken }
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLockedValue { state -> Bool in
                    if !state.items.isEmpty || state.finished { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }
}

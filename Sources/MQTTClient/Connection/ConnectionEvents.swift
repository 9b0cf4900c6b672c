import DequeModule
import NIOConcurrencyHelpers

/// The events of one connection, from its channel handler to the client, in order.
///
/// While connecting the client waits for events here. Once connected, the handler calls the
/// client directly (``MQTTClient/connectionEvent(_:on:)``) and only the close comes through
/// the queue: a waiting task resumes on the global executor and hops back to the event loop,
/// two thread switches per read that were a third of `databus pub`'s time.
final class ConnectionEvents: Sendable {
    private struct State {
        var buffer = Deque<ConnectionEvent>()
        var waiter: UnsafeContinuation<ConnectionEvent?, Never>?
        var finished = false
    }

    private let state = NIOLockedValueBox(State())

    /// Hands an event to the client.
    func yield(_ event: ConnectionEvent) {
        let waiter = state.withLockedValue { state -> UnsafeContinuation<ConnectionEvent?, Never>? in
            guard !state.finished else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.buffer.append(event)
            return nil
        }
        waiter?.resume(returning: event)
    }

    /// The events waiting, taken without waiting.
    func takeBuffered() -> [ConnectionEvent] {
        state.withLockedValue { state in
            defer { state.buffer.removeAll() }
            return Array(state.buffer)
        }
    }

    /// No more events: the client's `next` returns `nil` once the buffer is empty.
    func finish() {
        let waiter = state.withLockedValue { state -> UnsafeContinuation<ConnectionEvent?, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.buffer.isEmpty ? state.waiter : nil
        }
        waiter?.resume(returning: nil)
    }

    /// The next event, waiting for it on the caller's executor; `nil` after ``finish()`` or
    /// when the waiting task is cancelled.
    func next(isolation: isolated (any Actor)? = #isolation) async -> ConnectionEvent? {
        if let ready = state.withLockedValue({ state -> ConnectionEvent?? in
            if let event = state.buffer.popFirst() { return .some(event) }
            return state.finished ? .some(nil) : nil
        }) {
            return ready
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation(isolation: isolation) { continuation in
                let immediate = state.withLockedValue { state -> ConnectionEvent?? in
                    if let event = state.buffer.popFirst() { return .some(event) }
                    if state.finished || Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLockedValue { state -> UnsafeContinuation<ConnectionEvent?, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}

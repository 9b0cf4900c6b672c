import MQTTCore
import NIOConcurrencyHelpers

/// Incoming messages as an `AsyncSequence`: all of them (``MQTTClient/messages``) or those of
/// one subscription (``MQTTClient/subscribe(to:qos:properties:)``).
///
/// Each sequence buffers what arrives until it is read, and ends when ``MQTTClient/disconnect()``
/// is called (a subscription's sequence also when it is unsubscribed). Make the sequence
/// before subscribing: messages that arrive before it exists are not in it.
public struct MQTTMessages: AsyncSequence, Sendable {
    public typealias Element = MQTTMessage
    public typealias Failure = Never

    let stream: AsyncStream<MQTTMessage>

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<MQTTMessage>.AsyncIterator

        public mutating func next() async -> MQTTMessage? { await base.next() }

        public mutating func next(isolation actor: isolated (any Actor)?) async -> MQTTMessage? {
            await base.next(isolation: actor)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator()) }
}

/// Hands each incoming message to every sequence that wants it.
final class MessageRouter: Sendable {
    private struct Listener {
        /// `nil` for all messages; otherwise the filter to match (the inner filter of `$share/...`).
        let matchFilter: String?
        /// The filter as subscribed, to end the sequence on unsubscribe.
        let topicFilter: String?
        let continuation: AsyncStream<MQTTMessage>.Continuation
    }

    private let listeners = NIOLockedValueBox<(next: Int, all: [Int: Listener])>((0, [:]))

    /// A new sequence of the messages matching `topicFilter`, or of all messages.
    func makeMessages(topicFilter: String? = nil) -> (messages: MQTTMessages, id: Int) {
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTMessage.self, bufferingPolicy: .unbounded)
        var matchFilter = topicFilter
        if let topicFilter, let shared = try? SharedSubscription.parse(topicFilter) { matchFilter = shared.filter }
        let id = listeners.withLockedValue { listeners in
            let id = listeners.next
            listeners.next += 1
            listeners.all[id] = Listener(matchFilter: matchFilter, topicFilter: topicFilter, continuation: continuation)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.listeners.withLockedValue { $0.all.removeValue(forKey: id) }
        }
        return (MQTTMessages(stream: stream), id)
    }

    func deliver(_ message: MQTTMessage) {
        let targets = listeners.withLockedValue {
            $0.all.values.filter { $0.matchFilter.map { TopicFilter.matches($0, name: message.topic) } ?? true }
        }
        for target in targets { target.continuation.yield(message) }
    }

    /// Ends one sequence.
    func finish(id: Int) {
        let listener = listeners.withLockedValue { $0.all.removeValue(forKey: id) }
        listener?.continuation.finish()
    }

    /// Ends the sequences of these subscriptions.
    func finish(topicFilters: [String]) {
        let ended = listeners.withLockedValue { listeners in
            let ids = listeners.all.filter { $0.value.topicFilter.map(topicFilters.contains) ?? false }.map(\.key)
            return ids.compactMap { listeners.all.removeValue(forKey: $0) }
        }
        for listener in ended { listener.continuation.finish() }
    }

    /// Ends every sequence.
    func finishAll() {
        let ended = listeners.withLockedValue { listeners in
            defer { listeners.all.removeAll() }
            return Array(listeners.all.values)
        }
        for listener in ended { listener.continuation.finish() }
    }
}

/// The current connection state and every sequence watching it.
final class StateBroadcast: Sendable {
    private let state = NIOLockedValueBox<(current: ConnectionState, next: Int, listeners: [Int: AsyncStream<ConnectionState>.Continuation])>(
        (.stopped, 0, [:])
    )

    var current: ConnectionState { state.withLockedValue { $0.current } }

    /// A sequence that starts with the current state.
    func makeStream() -> AsyncStream<ConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: ConnectionState.self, bufferingPolicy: .unbounded)
        let id = state.withLockedValue { state in
            let id = state.next
            state.next += 1
            state.listeners[id] = continuation
            continuation.yield(state.current)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLockedValue { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }

    /// Held while states are handed to the sequences, so that every sequence sees them in the
    /// order they were set. Not `state`'s lock: handing a value to a sequence may resume its
    /// task, which waits for that task's own lock, and a task being cancelled holds that lock
    /// while its sequence's `onTermination` takes `state`'s lock (that deadlocked an event loop).
    private let handOver = NIOLock()

    func set(_ newState: ConnectionState) {
        handOver.withLock {
            let listeners = state.withLockedValue { state in
                state.current = newState
                return Array(state.listeners.values)
            }
            for listener in listeners { listener.yield(newState) }
        }
    }
}

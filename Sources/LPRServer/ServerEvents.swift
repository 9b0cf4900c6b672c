import Foundation
import LPRModel
import NIOConcurrencyHelpers

/// Something the server did that a live view shows: the dashboard's feed.
public enum LPRServerEvent: Sendable, Hashable {
    /// A detection was stored; `watchlistHit` when it matched the watch-list.
    case detection(StoredDetection, watchlistHit: Bool)
    /// An alert was raised.
    case alert(Alert)
    /// A camera went online or offline.
    case cameraStatus(cameraID: String, online: Bool)
    /// A camera sent health.
    case cameraHealth(cameraID: String, status: String)
    /// A camera reported its applied configuration.
    case configurationReported(cameraID: String)
    /// A command was answered or timed out.
    case commandFinished(cameraID: String, messageID: String, status: String)
}

/// Hands each event to every live listener. A listener that falls more than `bufferSize`
/// events behind loses the oldest (a live view, not a record: the store has everything).
final class EventBroadcaster: Sendable {
    private let listeners = NIOLockedValueBox<(next: Int, all: [Int: AsyncStream<LPRServerEvent>.Continuation])>((0, [:]))
    private let bufferSize: Int

    init(bufferSize: Int = 1000) { self.bufferSize = bufferSize }

    func stream() -> AsyncStream<LPRServerEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: LPRServerEvent.self, bufferingPolicy: .bufferingNewest(bufferSize))
        let id = listeners.withLockedValue { state in
            let id = state.next
            state.next += 1
            state.all[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.listeners.withLockedValue { $0.all.removeValue(forKey: id) }
        }
        return stream
    }

    var hasListeners: Bool { listeners.withLockedValue { !$0.all.isEmpty } }

    func publish(_ event: LPRServerEvent) {
        let targets = listeners.withLockedValue { Array($0.all.values) }
        for target in targets { target.yield(event) }
    }

    func finish() {
        let targets = listeners.withLockedValue { state in
            defer { state.all.removeAll() }
            return Array(state.all.values)
        }
        for target in targets { target.finish() }
    }
}

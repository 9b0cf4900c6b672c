import NIOConcurrencyHelpers
import NIOCore

/// The client connections of one event loop: one timer checks all their keep alives, as
/// mosquitto's loop does, instead of a timer per connection (a SwiftNIO repeated task, with its
/// task, promise, future and closures, cost about 700 bytes for each idle connection), and
/// shutdown closes them from here.
///
/// Used only on its event loop, except ``closeAll()``.
final class LoopConnections: @unchecked Sendable {
    private struct Entry {
        let handler: ConnectionHandler
        let context: ChannelHandlerContext
    }

    /// How often keep alives are checked: a client is closed between 1.5 × its keep alive
    /// and that plus this.
    static let interval = TimeAmount.milliseconds(500)

    let eventLoop: any EventLoop
    private var entries: [Entry] = []
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Holds `handler`'s connection until ``remove(_:)``.
    func add(_ handler: ConnectionHandler, context: ChannelHandlerContext) {
        eventLoop.assertInEventLoop()
        guard handler.loopSlot == nil else { return }
        handler.loopSlot = entries.count
        entries.append(Entry(handler: handler, context: context))
        if task == nil {
            task = eventLoop.scheduleRepeatedTask(initialDelay: Self.interval, delay: Self.interval) { [weak self] _ in
                self?.checkKeepAlives()
            }
        }
    }

    func remove(_ handler: ConnectionHandler) {
        eventLoop.assertInEventLoop()
        guard let slot = handler.loopSlot else { return }
        handler.loopSlot = nil
        let last = entries.removeLast()
        if slot < entries.count {
            entries[slot] = last
            last.handler.loopSlot = slot
        }
        if entries.isEmpty {
            task?.cancel()
            task = nil
            // Let go of the capacity a burst of connections left.
            entries = []
        }
    }

    /// Closes every connection of this loop (shutdown).
    func closeAll() {
        eventLoop.execute {
            for entry in self.entries { entry.context.close(promise: nil) }
        }
    }

    private func checkKeepAlives() {
        let now = NIODeadline.now()
        // Closing a connection removes it from `entries`: this goes through the array as it was.
        for entry in entries { entry.handler.checkKeepAlive(now: now, context: entry.context) }
    }
}

/// Every event loop's ``LoopConnections``, made when its first connection opens.
final class ConnectionRegistry: Sendable {
    private let loops = NIOLockedValueBox<[ObjectIdentifier: LoopConnections]>([:])

    func connections(on eventLoop: any EventLoop) -> LoopConnections {
        loops.withLockedValue { loops in
            let key = ObjectIdentifier(eventLoop)
            if let existing = loops[key] { return existing }
            let made = LoopConnections(eventLoop: eventLoop)
            loops[key] = made
            return made
        }
    }

    /// Closes every connection still open.
    func closeAll() {
        for loop in loops.withLockedValue({ Array($0.values) }) { loop.closeAll() }
    }
}

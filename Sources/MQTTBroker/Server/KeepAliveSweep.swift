import NIOConcurrencyHelpers
import NIOCore

/// Checks the keep alive of every connection on one event loop with one timer, as mosquitto's
/// loop does, instead of a timer per connection: a SwiftNIO repeated task (its task, promise,
/// future and closures) costs about 700 bytes for each idle connection.
///
/// Used only on its event loop.
final class KeepAliveSweep: @unchecked Sendable {
    private struct Entry {
        let handler: ConnectionHandler
        let context: ChannelHandlerContext
    }

    /// How often the connections are checked: a client is closed between 1.5 × its keep alive
    /// and that plus this.
    static let interval = TimeAmount.milliseconds(500)

    let eventLoop: any EventLoop
    private var entries: [Entry] = []
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Watches `handler`'s connection until ``remove(_:)``.
    func add(_ handler: ConnectionHandler, context: ChannelHandlerContext) {
        eventLoop.assertInEventLoop()
        guard handler.keepAliveSlot == nil else { return }
        handler.keepAliveSlot = entries.count
        entries.append(Entry(handler: handler, context: context))
        if task == nil {
            task = eventLoop.scheduleRepeatedTask(initialDelay: Self.interval, delay: Self.interval) { [weak self] _ in self?.check() }
        }
    }

    func remove(_ handler: ConnectionHandler) {
        eventLoop.assertInEventLoop()
        guard let slot = handler.keepAliveSlot else { return }
        handler.keepAliveSlot = nil
        let last = entries.removeLast()
        if slot < entries.count {
            entries[slot] = last
            last.handler.keepAliveSlot = slot
        }
        if entries.isEmpty {
            task?.cancel()
            task = nil
            // Let go of the capacity a burst of connections left.
            entries = []
        }
    }

    /// Connections watched now.
    var count: Int { entries.count }

    private func check() {
        let now = NIODeadline.now()
        // Closing a connection removes it from `entries`: go through a copy.
        for entry in entries { entry.handler.checkKeepAlive(now: now, context: entry.context) }
    }
}

/// The sweep of each event loop, made when its first connection asks for one.
final class KeepAliveSweeps: Sendable {
    private let sweeps = NIOLockedValueBox<[ObjectIdentifier: KeepAliveSweep]>([:])

    func sweep(for eventLoop: any EventLoop) -> KeepAliveSweep {
        sweeps.withLockedValue { sweeps in
            let key = ObjectIdentifier(eventLoop as AnyObject)
            if let existing = sweeps[key] { return existing }
            let made = KeepAliveSweep(eventLoop: eventLoop)
            sweeps[key] = made
            return made
        }
    }
}

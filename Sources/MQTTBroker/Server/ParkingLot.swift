import CDatabusEpoll
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where idle plain-TCP connections wait outside SwiftNIO (our key `park_idle_connections`).
///
/// A SwiftNIO channel costs about 2 KB whether or not anything happens on it. A connection
/// that has been quiet for a while hands its socket (a duplicate of the descriptor) to the lot;
/// its channel and its ``ConnectionHandler`` go, the session and the ``SessionOutlet`` stay,
/// and a ``ParkedConnection`` keeps what a new handler needs. One thread watches every parked
/// socket with an epoll set of its own: a lone PINGREQ is answered here; anything else the
/// client sends, a packet the broker must send it, a close request or its keep alive running
/// out gives the socket back to its event loop in a new channel with a new handler
/// (``ParkedConnection/resume()``).
///
/// The same thread accepts the connections of the plain-TCP listeners: SwiftNIO does not tell
/// a channel's descriptor, so the broker accepts them itself and hands each to an event loop
/// with `ClientBootstrap.withConnectedSocket`. Every channel of such a connection is made on
/// this thread, so that their memory comes from one malloc arena, which empties when the
/// connections park (see ``MallocTuning``).
final class ParkingLot: Sendable {
    private let epoll: CInt
    /// An eventfd in the epoll set: written to wake the lot's thread when a connection is to
    /// be resumed or the lot stops.
    private let doorbell: CInt
    private let state = Mutex(State())
    private let logger: Logger
    private let statistics: BrokerStatistics
    private let thread = NIOThreadPool(numberOfThreads: 1)

    private struct State: ~Copyable {
        var parked: [UInt64: ParkedConnection] = [:]
        var listeners: [UInt64: Listener] = [:]
        var nextID: UInt64 = 1
        var stopped = false
        /// Connections taken out of the lot, to be given a channel by the lot's thread.
        var resuming: [ParkedConnection] = []
        /// Sweeps left at whose end malloc gives memory back: set by parkings. Several (3 s),
        /// because the channels that a parking closes are freed on their event loops later.
        var trimsLeft = 0
        /// Listeners out of the epoll set until the given time: they could not accept (out of
        /// descriptors or memory) and stay readable, so watching them would spin.
        var pausedListeners: [(id: UInt64, until: NIODeadline)] = []
        /// When an accept error was last logged, and how many since.
        var lastAcceptErrorLog: NIODeadline?
        var acceptErrorsSinceLog = 0
    }

    /// The epoll data of ``doorbell``.
    private static let doorbellID: UInt64 = 0

    /// A listening socket of ours and what to do with each connection it accepts.
    private struct Listener: Sendable {
        let descriptor: CInt
        let accepted: @Sendable (CInt) -> Void
    }

    /// How often parked connections' keep alive is checked (as ``LoopConnections/interval``).
    private static let sweepInterval = LoopConnections.interval

    init(statistics: BrokerStatistics, logger: Logger) throws {
        let epoll = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw IOError(errnoCode: errno, reason: "epoll_create1") }
        let doorbell = databus_eventfd_nonblocking()
        guard doorbell >= 0 else {
            close(epoll)
            throw IOError(errnoCode: errno, reason: "eventfd")
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.doorbellID
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, doorbell, &event) == 0 else {
            let code = errno
            close(epoll)
            close(doorbell)
            throw IOError(errnoCode: code, reason: "epoll_ctl")
        }
        self.epoll = epoll
        self.doorbell = doorbell
        self.statistics = statistics
        self.logger = logger
        thread.start()
        thread.submit { [self] _ in run() }
    }

    // MARK: Parking

    /// Watches `car`'s socket from now on; false once the lot is stopped or when the
    /// connection was woken before it got here (the caller resumes it then).
    func park(_ car: ParkedConnection) -> Bool {
        state.withLock { state in
            guard !state.stopped, !car.wokenEarly else { return false }
            let id = state.nextID
            state.nextID += 1
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
            event.data.u64 = id
            guard epoll_ctl(epoll, EPOLL_CTL_ADD, car.descriptor, &event) == 0 else { return false }
            car.parkingID = id
            state.parked[id] = car
            state.trimsLeft = 6
            statistics.parkedConnections.wrappingIncrement(ordering: .relaxed)
            return true
        }
    }

    /// Something is to be written to `car` or it is to be closed: it goes back to its event
    /// loop. Woken between leaving its channel and arriving here, it is resumed on arrival.
    func wake(_ car: ParkedConnection) {
        state.withLock { state in
            guard take(car.parkingID, from: &state) != nil else {
                car.wokenEarly = true
                return
            }
            // Taken: the lot is not stopped (stopping takes every parked connection).
            queue(car, in: &state)
        }
    }

    /// Has the lot's thread give `car` a channel again; at once on this thread once the lot
    /// is stopped.
    func resumeSoon(_ car: ParkedConnection) {
        let queued = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            queue(car, in: &state)
            return true
        }
        if !queued { car.resume() }
    }

    /// Queues `car` for the lot's thread, with the lock held (so the doorbell, closed once
    /// the lot has stopped, is open). The doorbell is rung only for the first connection
    /// queued: the thread takes the whole queue at once, so waking 10,000 parked subscribers
    /// for one message costs the publisher's event loop one write, not 10,000.
    private func queue(_ car: ParkedConnection, in state: inout State) {
        state.resuming.append(car)
        if state.resuming.count == 1 { ring() }
    }

    private func ring() {
        var one: UInt64 = 1
        _ = write(doorbell, &one, 8)
    }

    private func take(_ id: UInt64, from state: inout State) -> ParkedConnection? {
        guard let car = state.parked.removeValue(forKey: id) else { return nil }
        var unused = epoll_event()
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, car.descriptor, &unused)
        statistics.parkedConnections.wrappingDecrement(ordering: .relaxed)
        return car
    }

    // MARK: Accepting

    /// Binds `host`:`port` and accepts its connections on the lot's thread, handing each
    /// (non-blocking) socket to `accepted`.
    /// - Returns: the listener, with the address it is bound to.
    func listen(host: String, port: Int, accepted: @escaping @Sendable (CInt) -> Void) throws -> OwnListener {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let family = address.protocol.rawValue
        let descriptor = socket(family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        do {
            var one: CInt = 1
            var zero: CInt = 0
            let size = socklen_t(MemoryLayout<CInt>.size)
            _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, size)
            // "::" takes IPv4 too, as SwiftNIO's and mosquitto's listeners do.
            if family == AF_INET6 { _ = setsockopt(descriptor, CInt(IPPROTO_IPV6), IPV6_V6ONLY, &zero, size) }
            let bound = address.withSockAddr { pointer, size in bind(descriptor, pointer, socklen_t(size)) }
            guard bound == 0 else { throw IOError(errnoCode: errno, reason: "bind(\(host):\(port))") }
            guard Glibc.listen(descriptor, 512) == 0 else { throw IOError(errnoCode: errno, reason: "listen") }
            let local = try Self.localAddress(of: descriptor, host: host)
            let id = try state.withLock { state -> UInt64 in
                let id = state.nextID
                state.nextID += 1
                var event = epoll_event()
                event.events = EPOLLIN.rawValue
                event.data.u64 = id
                guard epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event) == 0 else {
                    throw IOError(errnoCode: errno, reason: "epoll_ctl")
                }
                state.listeners[id] = Listener(descriptor: descriptor, accepted: accepted)
                return id
            }
            return OwnListener(lot: self, id: id, localAddress: local)
        } catch {
            close(descriptor)
            throw error
        }
    }

    private static func localAddress(of descriptor: CInt, host: String) throws -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { throw IOError(errnoCode: errno, reason: "getsockname") }
        if Int32(storage.ss_family) == AF_INET6 {
            let address = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee } }
            return SocketAddress(address, host: host)
        }
        let address = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee } }
        return SocketAddress(address, host: host)
    }

    /// Stops accepting on the listener `id` and closes its socket.
    fileprivate func stopListening(_ id: UInt64) {
        state.withLock { state in stopListening(id, in: &state) }
    }

    private func stopListening(_ id: UInt64, in state: inout State) {
        guard let listener = state.listeners.removeValue(forKey: id) else { return }
        var unused = epoll_event()
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, listener.descriptor, &unused)
        close(listener.descriptor)
    }

    /// How long a listener that could not accept is left alone.
    private static let acceptPause = TimeAmount.milliseconds(250)
    /// Accept errors are logged at most this often.
    private static let acceptErrorLogInterval = TimeAmount.seconds(10)

    private func accept(on listener: Listener, id: UInt64) {
        while true {
            let descriptor = databus_accept_nonblocking(listener.descriptor)
            if descriptor >= 0 {
                listener.accepted(descriptor)
                continue
            }
            let code = errno
            switch code {
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // The connection waits in the listen queue; the socket stays readable, so it
                // leaves the epoll set for a while instead of being retried at once.
                let now = NIODeadline.now()
                let log = state.withLock { state -> Int? in
                    var unused = epoll_event()
                    _ = epoll_ctl(epoll, EPOLL_CTL_DEL, listener.descriptor, &unused)
                    state.pausedListeners.append((id, now + Self.acceptPause))
                    state.acceptErrorsSinceLog += 1
                    if let last = state.lastAcceptErrorLog, now - last < Self.acceptErrorLogInterval { return nil }
                    state.lastAcceptErrorLog = now
                    defer { state.acceptErrorsSinceLog = 0 }
                    return state.acceptErrorsSinceLog
                }
                if let log {
                    logger.error(
                        "cannot accept a connection: \(String(cString: strerror(code))) (\(log) time(s) since the last message; retrying every 250 ms)"
                    )
                }
                return
            default:
                // EAGAIN: all accepted; anything else (the listener closed): nothing to do.
                return
            }
        }
    }

    // MARK: The lot's thread

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 128)
        var lastSweep = NIODeadline.now()
        while !state.withLock({ $0.stopped }) {
            let ready = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, CInt($0.count), 250) }
            var resume: [ParkedConnection] = []
            var accepting: [(UInt64, Listener)] = []
            if ready > 0 {
                state.withLock { state in
                    for event in events[0..<Int(ready)] {
                        let id = event.data.u64
                        if id == Self.doorbellID {
                            var count: UInt64 = 0
                            _ = read(doorbell, &count, 8)
                        } else if let listener = state.listeners[id] {
                            accepting.append((id, listener))
                        } else if let car = state.parked[id], !answerPing(car, events: event.events),
                            let taken = take(id, from: &state)
                        {
                            // The client was heard from now, however long its new channel takes.
                            taken.lastActivity = .now()
                            resume.append(taken)
                        }
                    }
                }
            }
            let now = NIODeadline.now()
            let sweep = now - lastSweep >= Self.sweepInterval
            if sweep {
                lastSweep = now
                state.withLock { state in
                    for (id, car) in state.parked where car.keepAliveExpired(now: now) {
                        if let taken = take(id, from: &state) { resume.append(taken) }
                    }
                }
            }
            resume += state.withLock { state in
                defer { state.resuming = [] }
                return state.resuming
            }
            for car in resume { car.resume() }
            for (id, listener) in accepting { accept(on: listener, id: id) }
            resumeListeners(now: now)
            if sweep { trimAfterParking() }
        }
    }

    /// Puts paused listeners (``accept(on:id:)``) back in the epoll set once their pause is over.
    private func resumeListeners(now: NIODeadline) {
        state.withLock { state in
            guard !state.pausedListeners.isEmpty else { return }
            let due = state.pausedListeners.filter { $0.until <= now }
            state.pausedListeners.removeAll { $0.until <= now }
            for paused in due {
                guard let listener = state.listeners[paused.id] else { continue }
                var event = epoll_event()
                event.events = EPOLLIN.rawValue
                event.data.u64 = paused.id
                _ = epoll_ctl(epoll, EPOLL_CTL_ADD, listener.descriptor, &event)
            }
        }
    }

    /// Channels freed by parking leave free chunks whose pages malloc keeps (it gives back
    /// only the top of an arena on its own): at the end of each sweep for 3 s after
    /// connections parked, malloc gives the whole free pages inside its arenas back too.
    private func trimAfterParking() {
        let trim = state.withLock { state in
            guard state.trimsLeft > 0 else { return false }
            state.trimsLeft -= 1
            return true
        }
        #if canImport(Glibc)
        guard trim else { return }
        malloc_trim(0)
        // malloc_trim leaves the free top of a thread's arena (this thread's holds the
        // channels); a free of 64 KB or more makes malloc give it back.
        free(malloc(96 << 10))
        #endif
    }

    /// Answers a lone PINGREQ on a parked socket. False when anything else is there (a packet,
    /// the client closing, an error): the connection must go back to an event loop.
    /// Called with the lot's lock held, so nobody resumes the connection meanwhile.
    private func answerPing(_ car: ParkedConnection, events: UInt32) -> Bool {
        guard events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) == 0 else { return false }
        var bytes: (UInt8, UInt8, UInt8) = (0, 0, 0)
        let peeked = withUnsafeMutableBytes(of: &bytes) { recv(car.descriptor, $0.baseAddress, 3, CInt(MSG_PEEK) | CInt(MSG_DONTWAIT)) }
        if peeked < 0 && (errno == EAGAIN || errno == EINTR) { return true }
        guard peeked == 2, bytes.0 == 0xC0, bytes.1 == 0x00 else { return false }
        let pong: (UInt8, UInt8) = (0xD0, 0x00)
        let sent = withUnsafeBytes(of: pong) { send(car.descriptor, $0.baseAddress, 2, CInt(MSG_DONTWAIT) | CInt(MSG_NOSIGNAL)) }
        // Not sent whole: the event loop deals with it (the PINGREQ is still unread).
        guard sent == 2 else { return false }
        _ = withUnsafeMutableBytes(of: &bytes) { recv(car.descriptor, $0.baseAddress, 2, CInt(MSG_DONTWAIT)) }
        statistics.bytesReceived.wrappingIncrement(by: 2, ordering: .relaxed)
        statistics.bytesSent.wrappingIncrement(by: 2, ordering: .relaxed)
        car.lastActivity = .now()
        return true
    }

    /// Stops the lot: no more accepting or parking. Parked connections are resumed so that
    /// their handlers end them as the broker shuts down.
    func stop() async {
        let resume = state.withLock { state -> [ParkedConnection] in
            state.stopped = true
            for id in Array(state.listeners.keys) { stopListening(id, in: &state) }
            defer { state.resuming = [] }
            return state.resuming + Array(state.parked.keys).compactMap { take($0, from: &state) }
        }
        for car in resume { car.resume() }
        ring()
        try? await thread.shutdownGracefully()
        close(epoll)
        close(doorbell)
    }
}

/// A listening socket accepted on by the ``ParkingLot``'s thread.
final class OwnListener: Sendable {
    private let lot: ParkingLot
    private let id: UInt64
    let localAddress: SocketAddress

    fileprivate init(lot: ParkingLot, id: UInt64, localAddress: SocketAddress) {
        self.lot = lot
        self.id = id
        self.localAddress = localAddress
    }

    /// Stops accepting and closes the socket.
    func close() { lot.stopListening(id) }
}

/// A connection waiting in the ``ParkingLot``: its socket, what its handler needs to carry on
/// (``ConnectionHandler/Resumption``; the handler itself is freed) and what the lot needs to
/// answer PINGREQ and watch its keep alive.
final class ParkedConnection: @unchecked Sendable {
    /// The duplicate of the channel's descriptor that keeps the TCP connection while parked.
    let descriptor: CInt
    /// Set by ``ParkingLot/park(_:)``; the lot's lock guards it and `parkingID`.
    var wokenEarly = false
    /// Set on the event loop when the resumed connection's handler is made.
    private var handlerMade = false
    // (The three above share 8 bytes; thousands of connections park.)
    /// Read on the event loop that resumes the connection only.
    let resumption: ConnectionHandler.Resumption
    /// The last packet from the client; the lot's lock guards it while parked.
    var lastActivity: NIODeadline
    var parkingID: UInt64 = 0
    /// A close asked for while parked (by a takeover, a reload, shutdown), for the handler once
    /// the connection is back; guarded by the connection's ``SessionOutlet``'s lock.
    var closeRequest: ConnectionHandler.CloseRequest?

    init(descriptor: CInt, resumption: ConnectionHandler.Resumption, lastActivity: NIODeadline) {
        self.descriptor = descriptor
        self.resumption = resumption
        self.lastActivity = lastActivity
    }

    /// Something is to be written to the connection or it is to be closed: back to its event loop.
    func wake() { resumption.parking.lot.wake(self) }

    /// Whether the client has been silent for longer than its keep alive allows (1.5 times).
    func keepAliveExpired(now: NIODeadline) -> Bool {
        let keepAlive = resumption.machine.keepAlive
        return keepAlive > 0 && now - lastActivity > .milliseconds(Int64(keepAlive) * 1500)
    }

    /// Gives the socket back to the connection's event loop in a new channel with a new
    /// handler, which carries on where the connection parked. The channel is made on the
    /// calling thread (SwiftNIO's `SocketChannel.init` runs there): the lot's, but for a lot
    /// stopped.
    func resume() {
        // Made on the calling thread with the channel, as when the lot accepted the connection.
        let handler = HandedOver(ConnectionHandler(resuming: self))
        ClientBootstrap(group: resumption.outlet.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Added last in configure: once it returns, the handler ends the connection.
                    try handler.value.configure(channel)
                    self.handlerMade = true
                }
            }
            .withConnectedSocket(descriptor)
            .whenFailure { error in
                // A handler added to the channel ends the connection when the channel closes.
                guard !self.handlerMade else { return }
                handler.value.resumeFailed(error)
            }
    }
}

/// A value made on one thread and used only on another from then on (a connection's handler,
/// made on the lot's thread, used on its event loop): what makes sending it safe is that order.
struct HandedOver<Value>: @unchecked Sendable {
    let value: Value

    init(_ value: Value) { self.value = value }
}

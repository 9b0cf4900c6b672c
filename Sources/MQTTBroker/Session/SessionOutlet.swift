import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// Where a connected client's packets go: packets are appended from any thread and written
/// on the connection's event loop in batches, one flush per batch.
///
/// Appending (not writing) is all that callers do, so a session may hand packets over while
/// it holds its lock: the order of hand-over is the order on the wire, and no channel event
/// can re-enter the session during it.
final class SessionOutlet: @unchecked Sendable {
    // Wide fields first, the narrow ones together at the end: every connected client (parked
    // or not) has an outlet, and the padding between them cost 40 bytes.

    /// The connection's event loop (a parked connection comes back on the same one).
    let eventLoop: any EventLoop
    /// The connection's channel; nil while the connection is parked (``ParkingLot``).
    private var attached: (any Channel)?
    /// Changes each PUBLISH before it is encoded (a bridge maps topics); nil for clients.
    private let rewriter: (any PublishRewriter)?
    private let statistics: BrokerStatistics
    private var pending: [MQTTPacket] = []
    /// While parked: the connection in the lot, woken (once: `woken`) when something is to
    /// be written or a close is asked for; it carries the close request back.
    private var parkedAs: ParkedConnection?
    /// Aliases given so far; touched only on the connection's event loop (in `drain`).
    private var topicAliases: [String: UInt16] = [:]
    /// When the last batch was written; on the event loop only.
    private(set) var lastWrite = NIODeadline.now()
    /// The client's maximum packet size; 0 when it set none (0 is not a size it may set).
    private let maximumPacketSize: UInt32
    /// Guards `attached`, `pending`, `drainScheduled`, `parkedAs`, `woken` and the parked
    /// connection's close request.
    private let lock = InlineLock()
    private let quota: Int32
    /// Topic aliases the client accepts from us (its 5.0 topic alias maximum).
    private let topicAliasMaximum: UInt16
    let protocolVersion: MQTTProtocolVersion
    private var drainScheduled = false
    private var woken = false

    /// The client's maximum packet size (5.0 CONNECT property), if it set one.
    var clientMaximumPacketSize: Int? { maximumPacketSize == 0 ? nil : Int(maximumPacketSize) }
    /// How many QoS 1/2 messages may be in flight to the client (our limit and its receive maximum).
    var sendQuota: Int { Int(quota) }

    init(
        channel: any Channel,
        protocolVersion: MQTTProtocolVersion,
        clientMaximumPacketSize: Int?,
        sendQuota: Int,
        topicAliasMaximum: UInt16 = 0,
        statistics: BrokerStatistics,
        rewriter: (any PublishRewriter)? = nil
    ) {
        self.attached = channel
        self.eventLoop = channel.eventLoop
        self.protocolVersion = protocolVersion
        self.maximumPacketSize = clientMaximumPacketSize.map { UInt32(clamping: max($0, 1)) } ?? 0
        self.quota = Int32(clamping: sendQuota)
        self.topicAliasMaximum = protocolVersion == .v5 ? topicAliasMaximum : 0
        self.statistics = statistics
        self.rewriter = rewriter
    }

    /// The connection's channel now (nil while parked).
    var channel: (any Channel)? { lock.withLock { attached } }

    /// Whether the connection's outbound buffer has room (false while the client reads slowly;
    /// a parked connection has written everything).
    var isWritable: Bool { lock.withLock { attached?.isWritable ?? true } }

    func send(_ packet: MQTTPacket) {
        let (schedule, wake) = lock.withLock {
            pending.append(packet)
            return scheduleDrain()
        }
        if schedule { eventLoop.execute { self.drain() } }
        wake?.wake()
    }

    func send(_ packets: [MQTTPacket]) {
        guard !packets.isEmpty else { return }
        let (schedule, wake) = lock.withLock {
            pending.append(contentsOf: packets)
            return scheduleDrain()
        }
        if schedule { eventLoop.execute { self.drain() } }
        wake?.wake()
    }

    /// With the lock held, after packets were added: whether to schedule a drain, or the
    /// parked connection to bring back (once; its packets wait until it is back).
    private func scheduleDrain() -> (Bool, ParkedConnection?) {
        guard attached != nil else { return (false, takeWake()) }
        guard !drainScheduled else { return (false, nil) }
        drainScheduled = true
        return (true, nil)
    }

    /// With the lock held: the parked connection, the first time only.
    private func takeWake() -> ParkedConnection? {
        guard !woken else { return nil }
        woken = true
        return parkedAs
    }

    /// Sends `packet` once `operations` are in `store` (at once when there is nothing to store).
    func send(_ packet: MQTTPacket, afterStoring operations: [StoreOperation], in store: SQLiteBrokerStore?) {
        guard let store, !operations.isEmpty else { return send(packet) }
        store.commit(operations) { _ in self.send(packet) }
    }

    /// Whether `packet` fits the client's maximum packet size.
    func fits(_ packet: MQTTPacket) -> Bool {
        guard let limit = clientMaximumPacketSize else { return true }
        var packet = packet
        if let rewriter, case .publish(var publish) = packet {
            rewriter.rewrite(&publish)
            packet = .publish(publish)
        }
        return ((try? packet.encodedSize(version: protocolVersion)) ?? Int.max) <= limit
    }

    /// Writes what is pending now; on the connection's event loop only (the connection's
    /// handler, before its last packet).
    func writePending() {
        drain()
    }

    private func drain() {
        let (packets, channel) = lock.withLock { () -> ([MQTTPacket], (any Channel)?) in
            drainScheduled = false
            // Parked: the packets wait for the connection to come back.
            guard let attached else { return ([], nil) }
            // The list goes with the batch: an idle connection keeps no capacity for packets.
            defer { pending = [] }
            return (pending, attached)
        }
        guard let channel, channel.isActive, !packets.isEmpty else { return }
        lastWrite = .now()
        // The packets go out encoded one after another in as few buffers as possible (one per
        // `Self.writeChunk` bytes): one allocation and one write for a batch instead of one each.
        var bytes = 0
        var buffer = channel.allocator.buffer(capacity: Self.estimatedSize(of: packets))
        let changesPublish = rewriter != nil || topicAliasMaximum > 0
        for var packet in packets {
            var sentQoS: QoS?
            if case .publish(var publish) = packet {
                if changesPublish {
                    if let rewriter {
                        rewriter.rewrite(&publish)
                        rewriter.willSend(publish)
                    }
                    if topicAliasMaximum > 0 { applyTopicAlias(&publish) }
                    packet = .publish(publish)
                }
                sentQoS = publish.qos
            }
            let start = buffer.writerIndex
            do {
                try packet.write(to: &buffer, version: protocolVersion)
            } catch {
                buffer.moveWriterIndex(to: start)
                statistics.dropped(.encodingFailed)
                continue
            }
            if let sentQoS { statistics.sent(sentQoS) }
            if buffer.readableBytes >= Self.writeChunk {
                bytes += buffer.readableBytes
                channel.write(buffer, promise: nil)
                buffer = channel.allocator.buffer(capacity: Self.writeChunk)
            }
        }
        if buffer.readableBytes > 0 {
            bytes += buffer.readableBytes
            channel.write(buffer, promise: nil)
        }
        statistics.bytesSent.wrappingIncrement(by: bytes, ordering: .relaxed)
        channel.flush()
    }

    /// Bytes written to the connection in one buffer at most.
    private static let writeChunk = 64 << 10

    /// About what `packets` take encoded (headers and properties estimated), up to one chunk.
    private static func estimatedSize(of packets: [MQTTPacket]) -> Int {
        var size = 0
        for packet in packets {
            if case .publish(let publish) = packet {
                size += publish.payload.readableBytes + publish.topicName.utf8.count + 16
            } else {
                size += 8
            }
            if size >= writeChunk { return writeChunk }
        }
        return size
    }

    /// Replaces a topic the client has seen by its alias, or gives a new topic an alias while
    /// the client's maximum allows.
    private func applyTopicAlias(_ publish: inout PublishPacket) {
        if let alias = topicAliases[publish.topicName] {
            publish.topicName = ""
            publish.properties.append(.topicAlias(alias))
        } else if topicAliases.count < Int(topicAliasMaximum) {
            let alias = UInt16(topicAliases.count + 1)
            topicAliases[publish.topicName] = alias
            publish.properties.append(.topicAlias(alias))
        }
    }

    /// Asks the connection to close after anything pending, telling a 5.0 client `reason`
    /// (its ``ConnectionHandler`` decides, on its event loop).
    func close(reason: ReasonCode, why: String = "closed by the broker") {
        let request = ConnectionHandler.CloseRequest(reason: reason, why: why)
        // Runs after any drain scheduled before, so pending packets go out first.
        eventLoop.execute {
            let (channel, wake) = self.lock.withLock { () -> ((any Channel)?, ParkedConnection?) in
                guard let attached = self.attached else {
                    self.parkedAs?.closeRequest = request
                    return (nil, self.takeWake())
                }
                return (attached, nil)
            }
            channel?.pipeline.fireUserInboundEventTriggered(request)
            wake?.wake()
        }
    }

    // MARK: Parking

    /// Lets the connection park as `car` (on its event loop): from now on packets wait and
    /// `car` is woken, once, when one arrives or a close is asked for. False when packets are
    /// waiting.
    func park(as car: ParkedConnection) -> Bool {
        lock.withLock {
            guard pending.isEmpty, !drainScheduled else { return false }
            attached = nil
            parkedAs = car
            woken = false
            return true
        }
    }

    /// The connection is back in `channel` (on its event loop): writes what waited.
    /// - Returns: a close asked for while it was parked.
    func resume(in channel: any Channel) -> ConnectionHandler.CloseRequest? {
        let close = lock.withLock { () -> ConnectionHandler.CloseRequest? in
            attached = channel
            defer { parkedAs = nil }
            return parkedAs?.closeRequest
        }
        drain()
        return close
    }
}

/// Changes the PUBLISH packets an outlet sends, just before they are encoded: a bridge maps
/// local topics to the remote broker's.
protocol PublishRewriter: AnyObject, Sendable {
    /// Changes `publish` (called again for the same packet; no side effects).
    func rewrite(_ publish: inout PublishPacket)
    /// `publish`, rewritten, is about to be written to the connection.
    func willSend(_ publish: PublishPacket)
}

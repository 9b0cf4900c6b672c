import MQTTCore
import NIOCore

/// Monotonic nanoseconds, shared by publishers and subscribers of one generator process.
@inline(__always) func benchNow() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// A publisher: PUBLISH packets built from one pre-encoded header, sent as fast as the
/// in-flight window (or the rate) allows; QoS 1/2 acknowledgements open the window again.
/// Its state is touched only on its channel's event loop (the runner goes through `submit`).
final class BenchPublisher: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = MQTTPacket
    typealias OutboundOut = ByteBuffer

    private let index: UInt32
    private let qos: QoS
    private let window: Int
    private let rate: Int
    private let size: Int
    /// Fixed header, remaining length and topic: the same for every message.
    private let prefix: [UInt8]
    private let version: MQTTProtocolVersion
    private let connected: EventLoopPromise<Void>
    private var context: ChannelHandlerContext?
    private var running = false
    private var inflight = 0
    private var nextIdentifier: UInt16 = 0
    private var sequence: UInt64 = 0
    private var tick: RepeatedTask?
    private var owed = 0.0
    /// Messages handed to the socket.
    private(set) var sent = 0
    /// Messages the broker acknowledged (QoS 1: PUBACK; QoS 2: PUBCOMP).
    private(set) var acknowledged = 0

    init(index: Int, topic: String, configuration: BenchConfiguration, connected: EventLoopPromise<Void>) {
        self.index = UInt32(index)
        self.qos = configuration.qos
        self.window = max(1, configuration.inflight)
        self.rate = configuration.rate
        self.size = max(configuration.size, BenchPayload.headerSize)
        self.version = configuration.version
        self.connected = connected
        let topicBytes = Array(topic.utf8)
        let remaining = 2 + topicBytes.count + (qos == .atMostOnce ? 0 : 2) + (version == .v5 ? 1 : 0) + size
        var header = ByteBuffer()
        header.writeInteger(0x30 | (qos.rawValue << 1))
        header.writeMQTTVariableByteInteger(remaining)
        header.writeInteger(UInt16(topicBytes.count))
        header.writeBytes(topicBytes)
        self.prefix = Array(header.readableBytesView)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .connack(let connack):
            if connack.reasonCode.isFailure {
                connected.fail(BenchError("the broker refused the publisher: \(connack.reasonCode)"))
            } else {
                connected.succeed()
            }
        case .puback:
            inflight -= 1
            acknowledged += 1
            if rate == 0 { pump() }
        case .pubrec(let received):
            var buffer = context.channel.allocator.buffer(capacity: 4)
            try? MQTTPacket.pubrel(PubRelPacket(packetIdentifier: received.packetIdentifier)).write(to: &buffer, version: version)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .pubcomp:
            inflight -= 1
            acknowledged += 1
            if rate == 0 { pump() }
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if rate == 0 && context.channel.isWritable { pump() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connected.fail(error)
        context.close(promise: nil)
    }

    func start() {
        running = true
        guard rate > 0, let context else { return pump() }
        // Ticks of at least a millisecond; each sends what the rate owes by then.
        let interval = max(1_000_000, 1_000_000_000 / rate)
        let perTick = Double(rate) * Double(interval) / 1e9
        tick = context.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .nanoseconds(Int64(interval))) { [self] _ in
            owed += perTick
            var count = 0
            while owed >= 1, running, qos == .atMostOnce || inflight < window {
                owed -= 1
                send()
                count += 1
            }
            if count > 0 { self.context?.flush() }
        }
    }

    func stop() {
        running = false
        tick?.cancel()
    }

    /// Sends while the socket takes more and the window is open, a batch at a time so reads
    /// (acknowledgements) get their turn.
    private func pump() {
        guard running, let context else { return }
        var count = 0
        while running, count < 256, context.channel.isWritable, qos == .atMostOnce || inflight < window {
            send()
            count += 1
        }
        if count > 0 { context.flush() }
        if count == 256 { context.eventLoop.execute { self.pump() } }
    }

    private func send() {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: prefix.count + 3 + size)
        buffer.writeBytes(prefix)
        if qos != .atMostOnce {
            nextIdentifier = nextIdentifier == UInt16.max ? 1 : nextIdentifier + 1
            buffer.writeInteger(nextIdentifier)
            inflight += 1
        }
        if version == .v5 { buffer.writeInteger(UInt8(0)) }
        sequence += 1
        let sequence = self.sequence
        let index = self.index
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pointer in
            let payload = UnsafeMutableRawBufferPointer(rebasing: pointer[0..<size])
            payload.initializeMemory(as: UInt8.self, repeating: 0)
            BenchPayload.write(sentAt: benchNow(), sequence: sequence, publisher: index, into: payload)
            return size
        }
        sent += 1
        context.write(wrapOutboundOut(buffer), promise: nil)
    }
}

/// What one subscriber saw.
struct SubscriberTally: Sendable {
    var received = 0
    var duplicates = 0
    var reordered = 0
    var lastReceive: UInt64 = 0
    /// Unique messages per publisher.
    var unique: [Int] = []
}

/// A subscriber: records each message's latency and sequence number, acknowledges QoS 1/2.
/// Its state is touched only on its channel's event loop (the runner goes through `submit`).
final class BenchSubscriber: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = MQTTPacket
    typealias OutboundOut = ByteBuffer

    private let filter: String
    private let qos: QoS
    private let version: MQTTProtocolVersion
    private let ready: EventLoopPromise<Void>
    private var tally = SubscriberTally()
    /// Per publisher: a bit per sequence number seen, and the highest seen.
    private var seen: [[UInt64]] = []
    private var highest: [UInt64] = []
    /// Latencies, in microseconds.
    private var histogram = LatencyRecorder()

    init(filter: String, configuration: BenchConfiguration, ready: EventLoopPromise<Void>) {
        self.filter = filter
        self.qos = configuration.qos
        self.version = configuration.version
        self.ready = ready
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .connack(let connack):
            guard !connack.reasonCode.isFailure else {
                return ready.fail(BenchError("the broker refused the subscriber: \(connack.reasonCode)"))
            }
            var buffer = context.channel.allocator.buffer(capacity: 32)
            let subscribe = SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: filter, options: SubscriptionOptions(qos: qos))])
            try? MQTTPacket.subscribe(subscribe).write(to: &buffer, version: version)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .suback(let suback):
            if suback.reasonCodes.first?.isFailure ?? true {
                ready.fail(BenchError("the broker refused the subscription to \(filter): \(suback.reasonCodes)"))
            } else {
                ready.succeed()
            }
        case .publish(let publish):
            record(publish.payload)
            if let identifier = publish.packetIdentifier {
                var buffer = context.channel.allocator.buffer(capacity: 4)
                let answer: MQTTPacket =
                    publish.qos == .atLeastOnce
                    ? .puback(PubAckPacket(packetIdentifier: identifier)) : .pubrec(PubRecPacket(packetIdentifier: identifier))
                try? answer.write(to: &buffer, version: version)
                context.write(wrapOutboundOut(buffer), promise: nil)
            }
        case .pubrel(let release):
            var buffer = context.channel.allocator.buffer(capacity: 4)
            try? MQTTPacket.pubcomp(PubCompPacket(packetIdentifier: release.packetIdentifier)).write(to: &buffer, version: version)
            context.write(wrapOutboundOut(buffer), promise: nil)
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ready.fail(error)
        context.close(promise: nil)
    }

    private func record(_ payload: ByteBuffer) {
        let now = benchNow()
        guard let header = payload.withUnsafeReadableBytes({ BenchPayload.read($0) }) else { return }
        tally.received += 1
        tally.lastReceive = now
        histogram.record(nanoseconds: now >= header.sentAt ? now - header.sentAt : 0)
        let publisher = Int(header.publisher)
        while seen.count <= publisher {
            seen.append([])
            highest.append(0)
            tally.unique.append(0)
        }
        let word = Int(header.sequence >> 6)
        let bit = UInt64(1) << (header.sequence & 63)
        if seen[publisher].count <= word { seen[publisher].append(contentsOf: repeatElement(0, count: word - seen[publisher].count + 1024)) }
        if seen[publisher][word] & bit != 0 {
            tally.duplicates += 1
            return
        }
        seen[publisher][word] |= bit
        tally.unique[publisher] += 1
        if header.sequence < highest[publisher] { tally.reordered += 1 } else { highest[publisher] = header.sequence }
    }

    /// What this subscriber saw; call on its event loop.
    func result() -> (SubscriberTally, LatencyRecorder) { (tally, histogram) }
}

/// An idle connection for `conns`: connects, then only answers what the broker sends.
final class BenchIdleClient: ChannelInboundHandler {
    typealias InboundIn = MQTTPacket
    private let connected: EventLoopPromise<Void>

    init(connected: EventLoopPromise<Void>) { self.connected = connected }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .connack(let connack) = unwrapInboundIn(data) {
            if connack.reasonCode.isFailure {
                connected.fail(BenchError("the broker refused the connection: \(connack.reasonCode)"))
            } else {
                connected.succeed()
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connected.fail(error)
        context.close(promise: nil)
    }
}

public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

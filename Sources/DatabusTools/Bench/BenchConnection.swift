import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// Monotonic nanoseconds, shared by publishers and subscribers of one generator process.
@inline(__always) func benchNow() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// The broker's bytes split into MQTT packets, without decoding what the bench does not need:
/// the generator must cost far less than the broker it measures.
struct BenchFrames {
    private var cumulation: ByteBuffer?

    /// Calls `body` with each complete packet: its first byte and the bytes after its fixed header.
    mutating func consume(_ buffer: ByteBuffer, _ body: (UInt8, inout ByteBuffer) throws -> Void) throws {
        if cumulation == nil {
            cumulation = buffer
        } else {
            var incoming = buffer
            cumulation!.writeBuffer(&incoming)
        }
        while let first = cumulation!.getInteger(at: cumulation!.readerIndex, as: UInt8.self) {
            guard case .value(let length, let lengthBytes) = cumulation!.peekMQTTVariableByteInteger(at: cumulation!.readerIndex + 1) else {
                if case .tooLong = cumulation!.peekMQTTVariableByteInteger(at: cumulation!.readerIndex + 1) {
                    throw BenchError("the broker sent a malformed remaining length")
                }
                break
            }
            guard cumulation!.readableBytes >= 1 + lengthBytes + length else { break }
            cumulation!.moveReaderIndex(forwardBy: 1 + lengthBytes)
            var packet = cumulation!.readSlice(length: length)!
            try body(first, &packet)
        }
        if cumulation!.readableBytes == 0 {
            cumulation = nil
        } else if cumulation!.readerIndex > 65_536 {
            cumulation!.discardReadBytes()
        }
    }

    /// A packet that is not a PUBLISH, decoded in full (CONNACK, SUBACK, ...).
    static func decode(_ first: UInt8, _ body: ByteBuffer, version: MQTTProtocolVersion) throws -> MQTTPacket? {
        var whole = ByteBuffer()
        whole.writeInteger(first)
        whole.writeMQTTVariableByteInteger(body.readableBytes)
        var rest = body
        whole.writeBuffer(&rest)
        return try MQTTPacket.read(from: &whole, version: version)
    }
}

/// A publisher: PUBLISH packets built from one pre-encoded header and written many to a
/// buffer, sent as fast as the in-flight window (or the rate) allows; QoS 1/2 acknowledgements
/// open the window again. Its state is touched only on its channel's event loop (the runner
/// goes through `submit`).
final class BenchPublisher: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
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
    private var frames = BenchFrames()
    private var running = false
    private var inflight = 0
    private var nextIdentifier: UInt16 = 0
    private var sequence: UInt64 = 0
    private var tick: RepeatedTask?
    private var owed = 0.0
    /// PUBREL packets to send after this read.
    private var releases: ByteBuffer?
    /// Messages handed to the socket.
    private(set) var sent = 0
    /// Messages the broker acknowledged (QoS 1: PUBACK; QoS 2: PUBCOMP).
    private(set) var acknowledged = 0

    /// Bytes of messages written to one buffer before it is handed to the channel.
    private static let batchBytes = 64 << 10

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
        do {
            try frames.consume(unwrapInboundIn(data)) { first, body in
                switch first >> 4 {
                case 2:  // CONNACK: acknowledge flags, then the return or reason code
                    let code = body.getInteger(at: body.readerIndex + 1, as: UInt8.self) ?? 0xFF
                    if code == 0 {
                        connected.succeed()
                    } else {
                        connected.fail(BenchError("the broker refused the publisher: code \(code)"))
                    }
                case 4, 7:  // PUBACK, PUBCOMP
                    inflight -= 1
                    acknowledged += 1
                case 5:  // PUBREC: answer PUBREL
                    guard let identifier = body.getInteger(at: body.readerIndex, as: UInt16.self) else { return }
                    if releases == nil { releases = context.channel.allocator.buffer(capacity: 256) }
                    releases!.writeBytes([0x62, 0x02])
                    releases!.writeInteger(identifier)
                default:
                    break
                }
            }
        } catch {
            connected.fail(error)
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let releases {
            context.write(wrapOutboundOut(releases), promise: nil)
            self.releases = nil
            context.flush()
        }
        if rate == 0 { pump() }
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
            while owed >= 1, count < 1_000, running, qos == .atMostOnce || inflight + count < window {
                owed -= 1
                count += 1
            }
            send(count)
        }
    }

    func stop() {
        running = false
        tick?.cancel()
    }

    /// Sends while the socket takes more and the window is open, a batch at a time so reads
    /// (acknowledgements) get their turn.
    private func pump() {
        guard running, let context, context.channel.isWritable else { return }
        let open = qos == .atMostOnce ? 256 : min(256, window - inflight)
        guard open > 0 else { return }
        send(open)
        if open == 256 { context.eventLoop.execute { self.pump() } }
    }

    /// Writes `count` messages, as few buffers as will hold them, then flushes.
    private func send(_ count: Int) {
        guard count > 0, let context else { return }
        let messageBytes = prefix.count + 3 + size
        let perBuffer = max(1, Self.batchBytes / messageBytes)
        var left = count
        while left > 0 {
            let batch = min(left, perBuffer)
            var buffer = context.channel.allocator.buffer(capacity: batch * messageBytes)
            for _ in 0..<batch { append(to: &buffer) }
            context.write(wrapOutboundOut(buffer), promise: nil)
            left -= batch
        }
        context.flush()
    }

    private func append(to buffer: inout ByteBuffer) {
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
        let size = self.size
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pointer in
            let payload = UnsafeMutableRawBufferPointer(rebasing: pointer[0..<size])
            BenchPayload.write(sentAt: benchNow(), sequence: sequence, publisher: index, into: payload)
            payload[BenchPayload.headerSize...].initializeMemory(as: UInt8.self, repeating: 0)
            return size
        }
        sent += 1
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

/// A subscriber: records each message's latency and sequence number, acknowledges QoS 1/2 in
/// one write per read. Its state is touched only on its channel's event loop (the runner goes
/// through `submit`).
final class BenchSubscriber: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let filter: String
    private let qos: QoS
    private let version: MQTTProtocolVersion
    private let ready: EventLoopPromise<Void>
    private var frames = BenchFrames()
    private var tally = SubscriberTally()
    /// Per publisher: a bit per sequence number seen, and the highest seen.
    private var seen: [[UInt64]] = []
    private var highest: [UInt64] = []
    /// Latencies, in microseconds.
    private var histogram = LatencyRecorder()
    /// Acknowledgements to send after this read.
    private var answers: ByteBuffer?

    init(filter: String, configuration: BenchConfiguration, ready: EventLoopPromise<Void>) {
        self.filter = filter
        self.qos = configuration.qos
        self.version = configuration.version
        self.ready = ready
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try frames.consume(unwrapInboundIn(data)) { first, body in
                switch first >> 4 {
                case 3:
                    publishReceived(first, &body, context: context)
                case 6:  // PUBREL: answer PUBCOMP
                    guard let identifier = body.getInteger(at: body.readerIndex, as: UInt16.self) else { return }
                    answer(0x70, identifier, context: context)
                default:
                    try controlReceived(BenchFrames.decode(first, body, version: version), context: context)
                }
            }
        } catch {
            ready.fail(error)
            context.close(promise: nil)
        }
    }

    private func controlReceived(_ packet: MQTTPacket?, context: ChannelHandlerContext) {
        switch packet {
        case .connack(let connack)?:
            guard !connack.reasonCode.isFailure else {
                return ready.fail(BenchError("the broker refused the subscriber: \(connack.reasonCode)"))
            }
            var buffer = context.channel.allocator.buffer(capacity: 32)
            let subscribe = SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: filter, options: SubscriptionOptions(qos: qos))])
            try? MQTTPacket.subscribe(subscribe).write(to: &buffer, version: version)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .suback(let suback)?:
            if suback.reasonCodes.first?.isFailure ?? true {
                ready.fail(BenchError("the broker refused the subscription to \(filter): \(suback.reasonCodes)"))
            } else {
                ready.succeed()
            }
        default:
            break
        }
    }

    /// A PUBLISH: skip the topic (and 5.0 properties), read the payload's header, acknowledge.
    private func publishReceived(_ first: UInt8, _ body: inout ByteBuffer, context: ChannelHandlerContext) {
        let qos = (first >> 1) & 0x03
        guard let topicLength = body.readInteger(as: UInt16.self) else { return }
        body.moveReaderIndex(forwardBy: Int(topicLength))
        var identifier: UInt16?
        if qos > 0 { identifier = body.readInteger(as: UInt16.self) }
        if version == .v5, case .value(let length, let bytes) = body.peekMQTTVariableByteInteger(at: body.readerIndex) {
            body.moveReaderIndex(forwardBy: bytes + length)
        }
        record(body)
        if let identifier { answer(qos == 1 ? 0x40 : 0x50, identifier, context: context) }
    }

    private func answer(_ type: UInt8, _ identifier: UInt16, context: ChannelHandlerContext) {
        if answers == nil { answers = context.channel.allocator.buffer(capacity: 1024) }
        answers!.writeBytes([type, 0x02])
        answers!.writeInteger(identifier)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let answers else { return }
        context.writeAndFlush(wrapOutboundOut(answers), promise: nil)
        self.answers = nil
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

/// An idle connection for `conns`: connects, then only answers what the broker sends. For
/// `wake` it also subscribes to one topic at QoS 1 (ready at its SUBACK) and records how long
/// each message it gets took from its publisher (`deliveries`).
final class BenchIdleClient: ChannelInboundHandler {
    typealias InboundIn = MQTTPacket
    typealias OutboundOut = ByteBuffer
    private let connected: EventLoopPromise<Void>
    private let subscription: (filter: String, version: MQTTProtocolVersion, deliveries: BenchDeliveries)?
    /// The `wake` message came (a second copy is a duplicate).
    private var received = false

    init(
        connected: EventLoopPromise<Void>,
        subscribeTo filter: String? = nil,
        version: MQTTProtocolVersion = .v3_1_1,
        deliveries: BenchDeliveries? = nil
    ) {
        self.connected = connected
        self.subscription = filter.flatMap { filter in deliveries.map { (filter, version, $0) } }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .connack(let connack):
            if connack.reasonCode.isFailure {
                connected.fail(BenchError("the broker refused the connection: \(connack.reasonCode)"))
            } else if let subscription {
                let subscribe = SubscribePacket(
                    packetIdentifier: 1,
                    subscriptions: [.init(topicFilter: subscription.filter, options: SubscriptionOptions(qos: .atLeastOnce))]
                )
                write(.subscribe(subscribe), context: context)
            } else {
                connected.succeed()
            }
        case .suback(let suback):
            if suback.reasonCodes.first?.isFailure ?? true {
                connected.fail(BenchError("the broker refused the subscription: \(suback.reasonCodes)"))
            } else {
                connected.succeed()
            }
        case .publish(let publish):
            guard let subscription else { return }
            let now = benchNow()
            if received {
                subscription.deliveries.duplicate()
            } else if let header = publish.payload.withUnsafeReadableBytes({ BenchPayload.read($0) }) {
                received = true
                subscription.deliveries.record(nanoseconds: now >= header.sentAt ? now - header.sentAt : 0)
            }
            if let packetIdentifier = publish.packetIdentifier, publish.qos != .atMostOnce {
                write(.puback(PubAckPacket(packetIdentifier: packetIdentifier)), context: context)
            }
        default:
            break
        }
    }

    private func write(_ packet: MQTTPacket, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        try? packet.write(to: &buffer, version: subscription?.version ?? .v3_1_1)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connected.fail(error)
        context.close(promise: nil)
    }
}

/// What the `wake` scenario's subscribers received: one latency per delivery.
final class BenchDeliveries: Sendable {
    private let recorder = NIOLockedValueBox((latencies: LatencyRecorder(), duplicates: 0))

    func record(nanoseconds: UInt64) { recorder.withLockedValue { $0.latencies.record(nanoseconds: nanoseconds) } }

    func duplicate() { recorder.withLockedValue { $0.duplicates += 1 } }

    var latencies: LatencyRecorder { recorder.withLockedValue { $0.latencies } }
    var duplicates: Int { recorder.withLockedValue { $0.duplicates } }
}

/// The `wake` scenario's publisher: sends one QoS 1 message once connected, and is done at its PUBACK.
final class BenchOneMessage: ChannelInboundHandler {
    typealias InboundIn = MQTTPacket
    typealias OutboundOut = ByteBuffer
    private let topic: String
    private let size: Int
    private let version: MQTTProtocolVersion
    private let acknowledged: EventLoopPromise<Void>

    init(topic: String, size: Int, version: MQTTProtocolVersion, acknowledged: EventLoopPromise<Void>) {
        self.topic = topic
        self.size = max(size, BenchPayload.headerSize)
        self.version = version
        self.acknowledged = acknowledged
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .connack(let connack):
            guard !connack.reasonCode.isFailure else {
                return acknowledged.fail(BenchError("the broker refused the publisher: \(connack.reasonCode)"))
            }
            var payload = context.channel.allocator.buffer(capacity: size)
            payload.writeRepeatingByte(0x2E, count: size)
            payload.withUnsafeMutableReadableBytes { BenchPayload.write(sentAt: benchNow(), sequence: 0, publisher: 0, into: $0) }
            var buffer = context.channel.allocator.buffer(capacity: size + topic.utf8.count + 16)
            let publish = PublishPacket(topicName: topic, payload: payload, qos: .atLeastOnce, packetIdentifier: 1)
            try? MQTTPacket.publish(publish).write(to: &buffer, version: version)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .puback:
            acknowledged.succeed()
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        acknowledged.fail(error)
        context.close(promise: nil)
    }
}

public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

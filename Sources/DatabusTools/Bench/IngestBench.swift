import Foundation
import MQTTCore
import NIOCore
import NIOPosix

/// `databus bench ingest`: simulated cameras publish seed-format detections to
/// `lprserver/cameras/{id}/detection` (QoS 1) and wait for the LPR server's `detection/ack`;
/// measures detections stored and acknowledged per second and the publish → ack latency.
///
/// Each camera keeps at most `window` detections waiting for their ack (flat out), or publishes
/// `rate` a second. Payloads are built once and patched in place (message id, plate), so the
/// generator spends its time on the wire, not on JSON.
public struct IngestBench: Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 1883
        public var version: MQTTProtocolVersion = .v5
        public var cameras = 20
        /// Detections per second per camera; 0: as fast as the window allows.
        public var rate = 0
        /// Detections per camera waiting for their ack at most.
        public var window = 64
        public var duration: Double = 10
        /// How long to wait for the last acks after the load stops.
        public var drain: Double = 10
        public var brokerPID: Int32?
        public var serverPID: Int32?

        public init() {}
    }

    public let configuration: Configuration

    public init(configuration: Configuration) { self.configuration = configuration }

    public func run() async throws -> IngestBenchReport {
        let group = MultiThreadedEventLoopGroup.singleton
        let run = String(UUID().uuidString.prefix(6))
        var cameras: [(any Channel, IngestCamera)] = []
        defer { for (channel, _) in cameras { channel.close(promise: nil) } }
        for index in 0..<max(1, configuration.cameras) {
            let loop = group.next()
            let ready = loop.makePromise(of: Void.self)
            let camera = IngestCamera(index: index, run: run, configuration: configuration, ready: ready)
            let version = configuration.version
            let channel = try await ClientBootstrap(group: loop)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: version)))
                        try channel.pipeline.syncOperations.addHandler(camera)
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
            var buffer = channel.allocator.buffer(capacity: 64)
            try MQTTPacket.connect(
                ConnectPacket(protocolVersion: version, clientIdentifier: "bench-\(run)-\(camera.cameraID)", cleanStart: true, keepAlive: 60)
            ).write(to: &buffer, version: version)
            try await channel.writeAndFlush(buffer)
            try await ready.futureResult.get()
            cameras.append((channel, camera))
        }

        let generatorBefore = ProcessSample.take(nil)
        let brokerBefore = configuration.brokerPID.flatMap(ProcessSample.take)
        let serverBefore = configuration.serverPID.flatMap(ProcessSample.take)
        let started = benchNow()
        for (channel, camera) in cameras { channel.eventLoop.execute { camera.start() } }
        try await Task.sleep(for: .milliseconds(Int64(configuration.duration * 1000)))
        for (channel, camera) in cameras { try await channel.eventLoop.submit { camera.stop() }.get() }
        let loadEnded = benchNow()
        let generatorAfter = ProcessSample.take(nil)
        let brokerAfter = configuration.brokerPID.flatMap(ProcessSample.take)
        let serverAfter = configuration.serverPID.flatMap(ProcessSample.take)
        // The last acks.
        let drainDeadline = benchNow() + UInt64(configuration.drain * 1e9)
        while benchNow() < drainDeadline {
            var waiting = 0
            for (channel, camera) in cameras { waiting += try await channel.eventLoop.submit { camera.waiting }.get() }
            if waiting == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        var report = IngestBenchReport(configuration: configuration)
        for (channel, camera) in cameras {
            let tally = try await channel.eventLoop.submit { camera.tally }.get()
            report.add(tally)
        }
        let seconds = Double(loadEnded - started) / 1e9
        report.seconds = seconds
        func share(_ before: ProcessSample?, _ after: ProcessSample?) -> Double? {
            guard let before, let after else { return nil }
            return (after.cpuSeconds - before.cpuSeconds) / seconds * 100
        }
        report.generatorCPUPercent = share(generatorBefore, generatorAfter)
        report.brokerCPUPercent = share(brokerBefore, brokerAfter)
        report.serverCPUPercent = share(serverBefore, serverAfter)
        report.brokerRSSKilobytes = brokerAfter?.rssKilobytes
        report.serverRSSKilobytes = serverAfter?.rssKilobytes
        return report
    }
}

/// What one camera saw.
struct IngestTally: Sendable {
    var sent = 0
    var brokerAcknowledged = 0
    var stored = 0
    var duplicates = 0
    var rejected = 0
    /// Acks counted within the load window (for the rate).
    var ackedDuringLoad = 0
    var latency = LatencyRecorder()
}

/// One simulated camera on its own connection; touched only on its event loop.
final class IngestCamera: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = MQTTPacket
    typealias OutboundOut = ByteBuffer

    let cameraID: String
    private let configuration: IngestBench.Configuration
    private let ready: EventLoopPromise<Void>
    private let topic: String
    private let template: [UInt8]
    private let idOffset: Int
    private let plateOffset: Int
    private let idPrefix: [UInt8]
    private var context: ChannelHandlerContext?
    private var running = false
    private var sequence = 0
    private var nextIdentifier: UInt16 = 0
    /// Send time of each detection still waiting for its ack, by sequence.
    private var pending: [Int: UInt64] = [:]
    private var tick: RepeatedTask?
    private var owed = 0.0
    private(set) var tally = IngestTally()

    var waiting: Int { pending.count }

    /// `0000000000`: the width of a sequence number in a message id.
    static let sequenceWidth = 10

    init(index: Int, run: String, configuration: IngestBench.Configuration, ready: EventLoopPromise<Void>) {
        self.cameraID = String(format: "BENCH%03d", index)
        self.configuration = configuration
        self.ready = ready
        self.topic = "lprserver/cameras/\(cameraID)/detection"
        let prefix = "bench-\(run)-\(cameraID)-"
        self.idPrefix = Array(prefix.utf8)
        let idPlaceholder = prefix + String(repeating: "0", count: Self.sequenceWidth)
        let platePlaceholder = "PLATE00"
        let text = """
            {"message_id":"\(idPlaceholder)","timestamp":"2024-01-15T10:30:00Z","camera_id":"\(cameraID)","checkpoint_id":"CP\(index % 10)",\
            "detection_data":{"vehicles_count":1,"plates_count":1,"processing_time_ms":150,"confidence_score":0.95,"detection_type":"lpr",\
            "vehicles":[{"vehicle_index":0,"bbox":[100,100,200,200],"confidence":0.95,"vehicle_class":"car","vehicle_type":"sedan","color":"white",\
            "brand":"Toyota","model":"Camry","year":2020}],"plates":[{"plate_index":0,"plate_number":"\(platePlaceholder)","bbox":[150,120,180,140],\
            "confidence":0.92,"plate_type":"standard","country":"TH","province":"Bangkok","is_valid":true}]},\
            "metadata":{"image_path":"/storage/images/\(cameraID).jpg","weather":"clear","lighting":"daylight"}}
            """
        let bytes = Array(text.utf8)
        self.template = bytes
        self.idOffset = Self.find(Array(idPlaceholder.utf8), in: bytes) + prefix.utf8.count
        self.plateOffset = Self.find(Array(platePlaceholder.utf8), in: bytes)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int {
        for start in 0...(haystack.count - needle.count) where haystack[start..<start + needle.count].elementsEqual(needle) { return start }
        return 0
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .connack(let connack):
            guard !connack.reasonCode.isFailure else { return ready.fail(BenchError("the broker refused \(cameraID): \(connack.reasonCode)")) }
            var buffer = context.channel.allocator.buffer(capacity: 64)
            let subscribe = SubscribePacket(
                packetIdentifier: 1,
                subscriptions: [.init(topicFilter: topic + "/ack", options: SubscriptionOptions(qos: .atLeastOnce))]
            )
            try? MQTTPacket.subscribe(subscribe).write(to: &buffer, version: configuration.version)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .suback(let suback):
            if suback.reasonCodes.first?.isFailure ?? true {
                ready.fail(BenchError("the broker refused the ack subscription of \(cameraID)"))
            } else {
                ready.succeed()
            }
        case .puback:
            tally.brokerAcknowledged += 1
        case .publish(let publish):
            if let identifier = publish.packetIdentifier {
                var buffer = context.channel.allocator.buffer(capacity: 8)
                try? MQTTPacket.puback(PubAckPacket(packetIdentifier: identifier)).write(to: &buffer, version: configuration.version)
                context.write(wrapOutboundOut(buffer), promise: nil)
            }
            receiveAck(publish.payload)
            if configuration.rate == 0 { pump() }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ready.fail(error)
        context.close(promise: nil)
    }

    func start() {
        running = true
        guard configuration.rate > 0, let context else { return pump() }
        let interval = max(1_000_000, 1_000_000_000 / configuration.rate)
        let perTick = Double(configuration.rate) * Double(interval) / 1e9
        tick = context.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .nanoseconds(Int64(interval))) { [self] _ in
            owed += perTick
            var count = 0
            while owed >= 1, running {
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

    private func pump() {
        guard running, let context else { return }
        var count = 0
        while running, pending.count < configuration.window, context.channel.isWritable, count < 256 {
            send()
            count += 1
        }
        if count > 0 { context.flush() }
    }

    private func send() {
        guard let context else { return }
        sequence += 1
        var payload = template
        var value = sequence
        for position in stride(from: idOffset + Self.sequenceWidth - 1, through: idOffset, by: -1) {
            payload[position] = UInt8(ascii: "0") + UInt8(value % 10)
            value /= 10
        }
        // A plate that changes with the sequence: letters then digits, as plates are.
        let letters = Array("ABCDEFGHJKLMNPRSTUVWXYZ".utf8)
        var plateValue = sequence &* 2_654_435_761
        for position in 0..<3 {
            payload[plateOffset + position] = letters[plateValue % letters.count]
            plateValue /= letters.count
        }
        for position in 3..<7 {
            payload[plateOffset + position] = UInt8(ascii: "0") + UInt8(plateValue % 10)
            plateValue /= 10
        }
        nextIdentifier = nextIdentifier == UInt16.max ? 1 : nextIdentifier + 1
        let publish = PublishPacket(
            topicName: topic,
            payload: ByteBuffer(bytes: payload),
            qos: .atLeastOnce,
            retain: false,
            packetIdentifier: nextIdentifier
        )
        var buffer = context.channel.allocator.buffer(capacity: payload.count + topic.utf8.count + 16)
        try? MQTTPacket.publish(publish).write(to: &buffer, version: configuration.version)
        pending[sequence] = benchNow()
        tally.sent += 1
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// `{"message_id":"bench-...-0000000042","status":"stored",...}`
    private func receiveAck(_ payload: ByteBuffer) {
        let now = benchNow()
        let bytes = payload.readableBytesView
        guard let sequence = Self.sequence(in: bytes, prefix: idPrefix), let sentAt = pending.removeValue(forKey: sequence) else { return }
        tally.latency.record(nanoseconds: now >= sentAt ? now - sentAt : 0)
        if running { tally.ackedDuringLoad += 1 }
        switch Self.status(in: bytes) {
        case UInt8(ascii: "s"): tally.stored += 1
        case UInt8(ascii: "d"): tally.duplicates += 1
        default: tally.rejected += 1
        }
    }

    static func sequence(in bytes: ByteBufferView, prefix: [UInt8]) -> Int? {
        guard let start = firstIndex(of: prefix, in: bytes) else { return nil }
        var value = 0
        var index = start + prefix.count
        for _ in 0..<sequenceWidth {
            guard index < bytes.endIndex else { return nil }
            let byte = bytes[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            index += 1
        }
        return value
    }

    static func status(in bytes: ByteBufferView) -> UInt8? {
        let key = Array(#""status":""#.utf8)
        guard let start = firstIndex(of: key, in: bytes), start + key.count < bytes.endIndex else { return nil }
        return bytes[start + key.count]
    }

    private static func firstIndex(of needle: [UInt8], in bytes: ByteBufferView) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        var index = bytes.startIndex
        while index + needle.count <= bytes.endIndex {
            if bytes[index] == needle[0] {
                var matches = true
                for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                    matches = false
                    break
                }
                if matches { return index }
            }
            index += 1
        }
        return nil
    }
}

/// The figures of an ingest run.
public struct IngestBenchReport: Sendable {
    public let configuration: IngestBench.Configuration
    public var seconds = 0.0
    public var sent = 0
    public var brokerAcknowledged = 0
    public var stored = 0
    public var duplicates = 0
    public var rejected = 0
    var ackedDuringLoad = 0
    var latency = LatencyRecorder()
    public var generatorCPUPercent: Double?
    public var brokerCPUPercent: Double?
    public var serverCPUPercent: Double?
    public var brokerRSSKilobytes: Int?
    public var serverRSSKilobytes: Int?

    init(configuration: IngestBench.Configuration) { self.configuration = configuration }

    mutating func add(_ tally: IngestTally) {
        sent += tally.sent
        brokerAcknowledged += tally.brokerAcknowledged
        stored += tally.stored
        duplicates += tally.duplicates
        rejected += tally.rejected
        ackedDuringLoad += tally.ackedDuringLoad
        latency.add(tally.latency)
    }

    /// Detections acknowledged by the server per second while the load ran.
    public var ackedPerSecond: Double { seconds > 0 ? Double(ackedDuringLoad) / seconds : 0 }
    /// Detections sent and never acknowledged by the server.
    public var unacknowledged: Int { sent - stored - duplicates - rejected }
    public func latencyMicroseconds(percentile: Double) -> UInt64 { latency.percentile(percentile) }
    public var latencyMaxMicroseconds: UInt64 { latency.max }

    public var table: String {
        func milliseconds(_ microseconds: UInt64) -> String { String(format: "%.2f ms", Double(microseconds) / 1000) }
        func percent(_ value: Double?) -> String { value.map { String(format: "%.0f %%", $0) } ?? "-" }
        var lines = [
            "ingest: \(configuration.cameras) cameras, \(configuration.rate == 0 ? "flat out (window \(configuration.window))" : "\(configuration.rate)/s each"), \(String(format: "%.1f", seconds)) s",
            "  sent                 \(sent)",
            "  acked by the broker  \(brokerAcknowledged)",
            "  stored (acked)       \(stored)",
            "  duplicate / rejected \(duplicates) / \(rejected)",
            "  never acked          \(unacknowledged)",
            "  stored and acked/s   \(String(format: "%.0f", ackedPerSecond))",
            "  publish -> ack       p50 \(milliseconds(latency.percentile(50)))  p90 \(milliseconds(latency.percentile(90)))  p99 \(milliseconds(latency.percentile(99)))  max \(milliseconds(latency.max))",
            "  CPU (one core = 100) generator \(percent(generatorCPUPercent))  broker \(percent(brokerCPUPercent))  server \(percent(serverCPUPercent))",
        ]
        if let brokerRSSKilobytes { lines.append("  broker RSS           \(brokerRSSKilobytes / 1024) MB") }
        if let serverRSSKilobytes { lines.append("  server RSS           \(serverRSSKilobytes / 1024) MB") }
        return lines.joined(separator: "\n")
    }

    public var jsonLine: String {
        func value(_ number: Double?) -> String { number.map { String(format: "%.1f", $0) } ?? "null" }
        return """
            {"scenario":"ingest","cameras":\(configuration.cameras),"rate":\(configuration.rate),"window":\(configuration.window),\
            "seconds":\(String(format: "%.2f", seconds)),"sent":\(sent),"broker_acked":\(brokerAcknowledged),"stored":\(stored),\
            "duplicates":\(duplicates),"rejected":\(rejected),"unacked":\(unacknowledged),"acked_per_s":\(String(format: "%.0f", ackedPerSecond)),\
            "p50_us":\(latency.percentile(50)),"p90_us":\(latency.percentile(90)),"p99_us":\(latency.percentile(99)),"max_us":\(latency.max),\
            "generator_cpu_pct":\(value(generatorCPUPercent)),"broker_cpu_pct":\(value(brokerCPUPercent)),"server_cpu_pct":\(value(serverCPUPercent)),\
            "broker_rss_kb":\(brokerRSSKilobytes.map(String.init) ?? "null"),"server_rss_kb":\(serverRSSKilobytes.map(String.init) ?? "null")}
            """
    }
}

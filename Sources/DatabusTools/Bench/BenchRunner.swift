import Foundation
import MQTTCore
import NIOCore
import NIOPosix
import NIOSSL

/// Drives a broker with one scenario and measures what comes back.
public struct BenchRunner: Sendable {
    public let configuration: BenchConfiguration

    public init(configuration: BenchConfiguration) {
        self.configuration = configuration
    }

    public func run() async throws -> BenchReport {
        raiseOpenFileLimit()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        do {
            let report: BenchReport
            switch configuration.scenario {
            case .conns, .wake: report = try await runConnections(group)
            case .ingest: throw BenchError("the ingest scenario arrives with the LPR server")
            case .fanin, .fanout, .pairs: report = try await runMessages(group)
            }
            try await group.shutdownGracefully()
            return report
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    // MARK: Connections

    private func sslContext() throws -> NIOSSLContext? {
        guard let tls = configuration.tls else { return nil }
        var settings = TLSConfiguration.makeClientConfiguration()
        settings.minimumTLSVersion = .tlsv12
        if let caFile = tls.caFile { settings.trustRoots = .file(caFile) }
        if let certificate = tls.certificateFile, let key = tls.keyFile {
            settings.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            settings.privateKey = .file(key)
        }
        if tls.insecure { settings.certificateVerification = .noHostnameVerification }
        return try NIOSSLContext(configuration: settings)
    }

    /// Opens a connection with `handler` at the end of its pipeline and sends CONNECT.
    private func open(
        on loop: any EventLoop,
        clientID: String,
        ssl: NIOSSLContext?,
        keepAlive: UInt16 = 60,
        decoded: Bool = false,
        handler: @escaping @Sendable () -> any ChannelHandler
    ) async throws -> any Channel {
        let version = configuration.version
        let host = configuration.host
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let ssl {
                        let serverName = host.first?.isNumber == true || host.contains(":") ? nil : host
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: ssl, serverHostname: serverName))
                    }
                    if decoded { try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: version))) }
                    try channel.pipeline.syncOperations.addHandler(handler())
                }
            }
            .connect(host: host, port: configuration.port).get()
        var buffer = channel.allocator.buffer(capacity: 64)
        try MQTTPacket.connect(ConnectPacket(protocolVersion: version, clientIdentifier: clientID, cleanStart: true, keepAlive: keepAlive))
            .write(to: &buffer, version: version)
        try await channel.writeAndFlush(buffer)
        return channel
    }

    // MARK: Message scenarios

    private struct Topology {
        var publisherTopics: [String]
        var subscriberFilters: [String]
        /// For each subscriber, the publishers whose messages it should get.
        var sources: [[Int]]
    }

    private var topology: Topology {
        let publishers = max(1, configuration.publishers)
        let subscribers = max(1, configuration.subscribers)
        switch configuration.scenario {
        case .fanout:
            return Topology(
                publisherTopics: ["lprserver/cameras/0/detection"],
                subscriberFilters: Array(repeating: "lprserver/cameras/0/detection", count: subscribers),
                sources: Array(repeating: [0], count: subscribers)
            )
        case .pairs:
            return Topology(
                publisherTopics: (0..<publishers).map { "bench/pairs/\($0)" },
                subscriberFilters: (0..<publishers).map { "bench/pairs/\($0)" },
                sources: (0..<publishers).map { [$0] }
            )
        default:
            return Topology(
                publisherTopics: (0..<publishers).map { "lprserver/cameras/\($0)/detection" },
                subscriberFilters: Array(repeating: "lprserver/cameras/+/detection", count: subscribers),
                sources: Array(repeating: Array(0..<publishers), count: subscribers)
            )
        }
    }

    private func runMessages(_ group: MultiThreadedEventLoopGroup) async throws -> BenchReport {
        let topology = self.topology
        let ssl = try sslContext()
        let run = UUID().uuidString.prefix(8)
        var subscribers: [(any Channel, BenchSubscriber)] = []
        var publishers: [(any Channel, BenchPublisher)] = []
        defer {
            for (channel, _) in subscribers { channel.close(promise: nil) }
            for (channel, _) in publishers { channel.close(promise: nil) }
        }
        for (index, filter) in topology.subscriberFilters.enumerated() {
            let loop = group.next()
            let ready = loop.makePromise(of: Void.self)
            let handler = BenchSubscriber(filter: filter, configuration: configuration, ready: ready)
            let channel = try await open(on: loop, clientID: "bench-sub-\(run)-\(index)", ssl: ssl) { handler }
            try await withTimeout(ready.futureResult, "subscriber \(index) did not get its SUBACK")
            subscribers.append((channel, handler))
        }
        for (index, topic) in topology.publisherTopics.enumerated() {
            let loop = group.next()
            let connected = loop.makePromise(of: Void.self)
            let handler = BenchPublisher(index: index, topic: topic, configuration: configuration, connected: connected)
            let channel = try await open(on: loop, clientID: "bench-pub-\(run)-\(index)", ssl: ssl) { handler }
            try await withTimeout(connected.futureResult, "publisher \(index) did not get its CONNACK")
            publishers.append((channel, handler))
        }

        let brokerBefore = configuration.brokerPID.flatMap { ProcessSample.take($0) }
        let selfBefore = ProcessSample.take(nil)
        let start = benchNow()
        for (channel, publisher) in publishers {
            channel.eventLoop.execute { publisher.start() }
        }
        try await Task.sleep(for: configuration.duration)
        var sentBy: [Int] = []
        for (channel, publisher) in publishers {
            sentBy.append(
                try await channel.eventLoop.submit {
                    publisher.stop()
                    return publisher.sent
                }.get()
            )
        }
        let sendEnd = benchNow()
        let expectedBy = topology.sources.map { sources in sources.reduce(0) { $0 + sentBy[$1] } }

        // Wait for what is still on its way, until every subscriber has it all or the drain time passes.
        let drainDeadline = ContinuousClock.now + configuration.drainTimeout
        var tallies: [SubscriberTally] = []
        var latency = LatencyRecorder()
        while true {
            tallies = []
            latency = LatencyRecorder()
            for (channel, subscriber) in subscribers {
                let (tally, recorder) = try await channel.eventLoop.submit { subscriber.result() }.get()
                tallies.append(tally)
                latency.add(recorder)
            }
            let complete = zip(tallies, expectedBy).allSatisfy { $0.0.unique.reduce(0, +) >= $0.1 }
            if complete || ContinuousClock.now >= drainDeadline { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let brokerAfter = configuration.brokerPID.flatMap { ProcessSample.take($0) }
        let selfAfter = ProcessSample.take(nil)
        let lastReceive = tallies.map(\.lastReceive).max() ?? sendEnd
        let seconds = Double(max(lastReceive, sendEnd) - start) / 1e9
        let unique = tallies.reduce(0) { $0 + $1.unique.reduce(0, +) }
        let expected = expectedBy.reduce(0, +)
        func percent(_ before: ProcessSample?, _ after: ProcessSample?) -> Double? {
            guard let before, let after, seconds > 0 else { return nil }
            return (after.cpuSeconds - before.cpuSeconds) / seconds * 100
        }
        return BenchReport(
            label: configuration.label,
            scenario: configuration.scenario.rawValue,
            qos: Int(configuration.qos.rawValue),
            size: max(configuration.size, BenchPayload.headerSize),
            publishers: publishers.count,
            subscribers: subscribers.count,
            seconds: seconds,
            sent: sentBy.reduce(0, +),
            expected: expected,
            received: tallies.reduce(0) { $0 + $1.received },
            lost: max(0, expected - unique),
            duplicates: tallies.reduce(0) { $0 + $1.duplicates },
            reordered: tallies.reduce(0) { $0 + $1.reordered },
            messagesPerSecond: seconds > 0 ? Double(unique) / seconds : 0,
            p50Microseconds: latency.percentile(50),
            p99Microseconds: latency.percentile(99),
            p999Microseconds: latency.percentile(99.9),
            maxMicroseconds: latency.max,
            brokerCPUPercent: percent(brokerBefore, brokerAfter),
            brokerRSSKilobytes: brokerAfter?.rssKilobytes,
            generatorCPUPercent: percent(selfBefore, selfAfter)
        )
    }

    // MARK: Idle connections

    /// `conns`: the connections held, and the broker's RSS growth per connection. `wake`: the
    /// same connections subscribed to one topic, then one message to all of them once they
    /// were held for the duration: its latency to each (p50, p99, max), deliveries per second
    /// until the last one arrived, and how many never did within the drain timeout (`lost`).
    private func runConnections(_ group: MultiThreadedEventLoopGroup) async throws -> BenchReport {
        let ssl = try sslContext()
        let run = UUID().uuidString.prefix(8)
        let keepAlive = configuration.connectionKeepAlive
        let version = configuration.version
        let wakeTopic = configuration.scenario == .wake ? "bench/wake/\(run)" : nil
        let deliveries = BenchDeliveries()
        let before = configuration.brokerPID.flatMap { ProcessSample.take($0) }
        var channels: [any Channel] = []
        defer { for channel in channels { channel.close(promise: nil) } }
        let total = max(1, configuration.connections)
        var opened = 0
        while opened < total {
            let batch = min(250, total - opened)
            let first = opened
            let batchChannels = try await withThrowingTaskGroup(of: (any Channel).self) { tasks in
                for index in first..<(first + batch) {
                    tasks.addTask {
                        let loop = group.next()
                        let connected = loop.makePromise(of: Void.self)
                        let channel = try await open(on: loop, clientID: "bench-idle-\(run)-\(index)", ssl: ssl, keepAlive: keepAlive, decoded: true)
                        {
                            BenchIdleClient(connected: connected, subscribeTo: wakeTopic, version: version, deliveries: deliveries)
                        }
                        try await withTimeout(connected.futureResult, "connection \(index) did not get its CONNACK (or SUBACK)")
                        return channel
                    }
                }
                var result: [any Channel] = []
                for try await channel in tasks { result.append(channel) }
                return result
            }
            channels += batchChannels
            opened += batch
        }
        // Hold every connection idle for the run's duration (at least a second, for the broker
        // to settle), then read the broker's memory.
        try await Task.sleep(for: max(.seconds(1), configuration.duration))
        let after = configuration.brokerPID.flatMap { ProcessSample.take($0) }
        var perConnection: Double?
        if let before, let after { perConnection = Double(after.rssKilobytes - before.rssKilobytes) * 1024 / Double(channels.count) }
        var report = BenchReport(
            label: configuration.label,
            scenario: configuration.scenario.rawValue,
            qos: 0,
            size: 0,
            publishers: 0,
            subscribers: 0,
            seconds: 0,
            sent: 0,
            expected: 0,
            received: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            messagesPerSecond: 0,
            p50Microseconds: 0,
            p99Microseconds: 0,
            p999Microseconds: 0,
            maxMicroseconds: 0,
            brokerCPUPercent: nil,
            brokerRSSKilobytes: after?.rssKilobytes,
            generatorCPUPercent: nil,
            connections: channels.count,
            bytesPerConnection: perConnection
        )
        guard let wakeTopic else { return report }
        let loop = group.next()
        let acknowledged = loop.makePromise(of: Void.self)
        let size = configuration.size
        let publisher = try await open(on: loop, clientID: "bench-wake-\(run)", ssl: ssl, decoded: true) {
            BenchOneMessage(topic: wakeTopic, size: size, version: version, acknowledged: acknowledged)
        }
        defer { publisher.close(promise: nil) }
        try await withTimeout(acknowledged.futureResult, "the message to the held connections was not acknowledged")
        let deadline = ContinuousClock.now + configuration.drainTimeout
        while deliveries.latencies.count < UInt64(channels.count) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let latencies = deliveries.latencies
        let received = Int(latencies.count)
        report.qos = 1
        report.size = size
        report.publishers = 1
        report.subscribers = channels.count
        report.seconds = Double(latencies.max) / 1_000_000
        report.sent = 1
        report.expected = channels.count
        report.received = received
        report.lost = channels.count - received
        report.duplicates = deliveries.duplicates
        report.messagesPerSecond = report.seconds > 0 ? Double(received) / report.seconds : 0
        report.p50Microseconds = latencies.percentile(50)
        report.p99Microseconds = latencies.percentile(99)
        report.p999Microseconds = latencies.percentile(99.9)
        report.maxMicroseconds = latencies.max
        return report
    }

    // MARK: Helpers

    private func withTimeout(_ future: EventLoopFuture<Void>, _ message: String) async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await future.get() }
            tasks.addTask {
                try await Task.sleep(for: .seconds(10))
                throw BenchError(message)
            }
            try await tasks.next()
            tasks.cancelAll()
        }
    }

    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}

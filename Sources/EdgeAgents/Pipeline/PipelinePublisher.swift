import Foundation
import Logging
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// `databus pipeline`: publishes a video pipeline's inference metadata, and optionally each
/// frame's JPEG, over MQTT, as the DL Streamer Pipeline Server's MQTT publisher does.
///
/// Each metadata line goes through the configured filter and is published on the configured
/// topic and QoS. Publishing never blocks on an outage: while the broker is unreachable, frames
/// wait in a bounded queue (oldest dropped first, every drop counted and logged) or in a durable
/// SQLite outbox; the client reconnects after 1 s, doubling up to 30 s.
public final class PipelinePublisher: Sendable {
    /// Everything besides the `mqtt_publisher` configuration.
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        /// The client identifier; `pipeline-` and 8 random hex digits by default (23 characters
        /// at most, as MQTT 3.1 requires).
        public var clientIdentifier: String
        /// Where frames wait durably (SQLite) while the broker is unreachable; in memory when `nil`.
        public var outboxPath: String?
        /// The most messages the queue keeps while disconnected before dropping the oldest.
        public var queueMessages: Int
        /// The most bytes the queue keeps while disconnected before dropping the oldest.
        public var queueBytes: Int
        /// The most messages waiting for the broker while connected before the input waits.
        public var window: Int

        public init(
            host: String = "localhost",
            port: Int = 1883,
            clientIdentifier: String? = nil,
            outboxPath: String? = nil,
            queueMessages: Int = 1000,
            queueBytes: Int = 256 * 1024 * 1024,
            window: Int = 256
        ) {
            self.host = host
            self.port = port
            self.clientIdentifier = clientIdentifier ?? "pipeline-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            self.outboxPath = outboxPath
            self.queueMessages = queueMessages
            self.queueBytes = queueBytes
            self.window = window
        }
    }

    /// The reconnect schedule: 1 s, doubling, up to 30 s, and then every 30 s, without jitter.
    public static let reconnectPolicy = ReconnectPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(30), multiplier: 2, jitter: .none)

    public let configuration: PipelineConfiguration
    public let options: Options
    /// The MQTT client that publishes.
    public let client: MQTTClient
    private let logger: Logger
    private let statisticsBox = NIOLockedValueBox(PipelineStatistics())

    /// What has been counted so far.
    public var statistics: PipelineStatistics { statisticsBox.withLockedValue { $0 } }

    /// - Parameters:
    ///   - configuration: the `mqtt_publisher` options.
    ///   - options: broker address, identity and queue bounds.
    ///   - clock: the clock of the reconnect backoff (tests pass a manual one).
    ///   - logger: where drops, invalid lines and connection changes are logged.
    /// - Throws: ``PipelineConfigurationError`` when the outbox file cannot be opened.
    public init(
        configuration: PipelineConfiguration,
        options: Options,
        clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "databus.pipeline")
    ) throws(PipelineConfigurationError) {
        self.configuration = configuration
        self.options = options
        self.logger = logger
        let clientConfiguration = try Self.clientConfiguration(configuration, options: options)
        self.client = MQTTClient(configuration: clientConfiguration, clock: clock, logger: logger)
    }

    /// The MQTT client's configuration for these options.
    public static func clientConfiguration(
        _ configuration: PipelineConfiguration,
        options: Options
    ) throws(PipelineConfigurationError) -> MQTTClient.Configuration {
        var tls: MQTTClient.TLS?
        if let files = configuration.tls {
            tls = MQTTClient.TLS(
                trust: files.caCertificate.map { .caFile($0) } ?? .systemDefault,
                certificateFile: files.clientCertificate,
                privateKeyFile: files.clientKey
            )
        }
        var client = MQTTClient.Configuration(
            host: options.host,
            port: options.port,
            clientIdentifier: options.clientIdentifier,
            protocolVersion: configuration.protocolVersion,
            tls: tls
        )
        client.reconnect = reconnectPolicy
        var outbox = OutboxConfiguration(
            maximumMessages: max(1, options.queueMessages),
            maximumBytes: max(1, options.queueBytes),
            overflowPolicy: .dropOldest
        )
        if let path = options.outboxPath {
            do {
                outbox.persistence = try SQLiteOutboxPersistence(path: path)
            } catch {
                throw PipelineConfigurationError(path: path, field: nil, "cannot open the outbox: \(error)")
            }
        }
        client.outbox = outbox
        return client
    }

    /// Publishes one message per metadata line until `metadata` ends and every message is
    /// published (QoS 1/2: acknowledged), then disconnects.
    ///
    /// - Parameters:
    ///   - metadata: JSON lines, one per frame.
    ///   - frames: where each frame's JPEG comes from, when `publish_frame` is on.
    /// - Returns: what was counted.
    @discardableResult
    public func run<Lines: AsyncSequence>(metadata: Lines, frames: (any FrameSource)?) async throws -> PipelineStatistics
    where Lines.Element == String {
        let window = PublishWindow(limit: options.window)
        let (tickets, ticketSink) = AsyncStream<(frame: Int, ticket: PublishTicket)>.makeStream()
        let client = self.client
        let logger = self.logger

        // Connection: keeps trying from the first attempt; the window opens while disconnected.
        let connection = Task {
            do {
                try await client.runUntilStopped()
            } catch {
                logger.error("the MQTT client stopped: \(error)")
            }
        }
        let watcher = Task {
            var started = false
            for await state in client.states {
                switch state {
                case .connected:
                    started = true
                    window.setOpen(false)
                    logger.info("connected", metadata: ["broker": "\(options.host):\(options.port)"])
                case .stopped:
                    // The first state may be the stopped of a client not yet started.
                    guard started else { continue }
                    window.setOpen(true)
                    return
                default:
                    started = true
                    window.setOpen(true)
                }
            }
        }
        // Acknowledgements, in order.
        let acknowledger = Task {
            for await (frame, ticket) in tickets {
                do {
                    let result = try await ticket.result()
                    if result.isSuccess {
                        statisticsBox.withLockedValue { $0.published += 1 }
                    } else {
                        statisticsBox.withLockedValue { $0.failed += 1 }
                        logger.warning("the broker refused a frame", metadata: ["frame": "\(frame)", "reason": "\(result.reasonCode)"])
                    }
                } catch let error as MQTTClientError where error.code == .droppedFromOutbox {
                    let dropped = statisticsBox.withLockedValue { statistics in
                        statistics.dropped += 1
                        return statistics.dropped
                    }
                    logger.warning(
                        "queue full while the broker is unreachable: dropped the oldest frame",
                        metadata: ["frame": "\(frame)", "dropped": "\(dropped)"]
                    )
                } catch {
                    statisticsBox.withLockedValue { $0.failed += 1 }
                    logger.warning("a frame was not published: \(error)", metadata: ["frame": "\(frame)"])
                }
                window.release()
            }
        }

        var index = 0
        do {
            for try await line in metadata {
                defer { index += 1 }
                statisticsBox.withLockedValue { $0.framesRead += 1 }
                let (decision, outcome) = PipelineFrame.decide(line: line, index: index, filter: configuration.filter)
                if let outcome { statisticsBox.withLockedValue { $0.add(outcome) } }
                switch decision {
                case .invalid(let reason):
                    statisticsBox.withLockedValue { $0.invalid += 1 }
                    logger.error("skipping metadata line \(index + 1): \(reason)")
                case .filteredOut(let id):
                    statisticsBox.withLockedValue { $0.filteredOut += 1 }
                    logger.debug("frame filtered out", metadata: ["frame": "\(id)"])
                case .publish(let frame):
                    var jpeg: [UInt8]?
                    if configuration.publishFrame, let frames {
                        jpeg = await frames.frame(frame.id)
                        if jpeg == nil {
                            statisticsBox.withLockedValue { $0.missingFrames += 1 }
                            logger.warning("no JPEG for frame; publishing its metadata alone", metadata: ["frame": "\(frame.id)"])
                        }
                    }
                    await window.acquire()
                    do {
                        let ticket = try await client.enqueue(
                            topic: configuration.topic,
                            payload: ByteBuffer(bytes: frame.payload(jpeg: jpeg)),
                            qos: configuration.qos
                        )
                        ticketSink.yield((frame.id, ticket))
                    } catch {
                        window.release()
                        statisticsBox.withLockedValue { $0.failed += 1 }
                        logger.error("cannot publish frame: \(error)", metadata: ["frame": "\(frame.id)"])
                    }
                }
            }
        } catch {
            logger.error("reading the metadata failed: \(error)")
            ticketSink.finish()
            await acknowledger.value
            await client.disconnect()
            await connection.value
            watcher.cancel()
            throw error
        }
        ticketSink.finish()
        await acknowledger.value
        if options.outboxPath != nil {
            // Frames restored from the outbox of an earlier run have no ticket here: wait for them too.
            while await client.outboxStatistics.messages > 0 && !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        await client.disconnect()
        await connection.value
        watcher.cancel()
        return statistics
    }
}

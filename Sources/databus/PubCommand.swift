import ArgumentParser
import DequeModule
import Foundation
import MQTTClient
import MQTTCore
import NIOCore

/// `databus pub`: publish a message, a file, or standard input, with mosquitto_pub's flags.
struct PubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pub",
        abstract: "Publish a message, a file or standard input, as mosquitto_pub does.",
        discussion: """
            The flags and the exit codes are mosquitto_pub's, so scripts written for it keep \
            working. Give exactly one of -m, -f, -l, -n and -s. -h is the host; --help prints this \
            help. Without -V the client speaks MQTT 3.1.1, as mosquitto_pub does; -D implies MQTT 5.

            The command exits once the broker has acknowledged every message (PUBACK at QoS 1, \
            PUBCOMP at QoS 2): `seq 1 1000 | databus pub -l -q 1 -t numbers` delivers all 1,000 \
            lines. A lost connection is re-established (1 s doubling to 30 s) and unacknowledged \
            messages are sent again.

            --outbox FILE (our own flag) keeps every message in a SQLite file until the broker has \
            acknowledged it: a pub killed (even with SIGKILL) or cut off sends what it had not \
            delivered when it runs again with the same --outbox, before anything new. One process at \
            a time may use a file.

            Exit codes: 0 when every message was acknowledged; the CONNACK return code (3.1.1) or \
            reason code (5) when the broker refuses the connection; 1 when a message is refused or \
            another error happens; 64 for bad flags.

            Examples:
              databus pub -h broker.local -t lprserver/cameras/7/status -m online -r -q 1
              databus pub -t lprserver/cameras/7/frame -f frame.jpg
              tail -F detections.log | databus pub -l -q 1 -t lprserver/cameras/7/detection --outbox /var/lib/camera/outbox.db
              databus pub -V 5 -t lprserver/alerts -m '{"plate":"AB123CD"}' -D publish content-type application/json
            """,
        helpNames: [.long]
    )

    @OptionGroup var client: ClientOptions

    @Option(name: [.customShort("t"), .customLong("topic")], help: "The topic to publish to.")
    var topic: String?

    @Option(name: [.customShort("m"), .customLong("message")], parsing: .unconditional, help: "Publish this message.")
    var message: String?

    @Option(name: [.customShort("f"), .customLong("file")], help: "Publish the contents of this file as one message.")
    var file: String?

    @Flag(name: [.customShort("l"), .customLong("stdin-line")], help: "Publish each line of standard input as a message, as it arrives.")
    var standardInputLines = false

    @Flag(name: [.customShort("s"), .customLong("stdin-file")], help: "Publish all of standard input as one message.")
    var standardInputFile = false

    @Flag(name: [.customShort("n"), .customLong("null-message")], help: "Publish an empty (zero-length) message.")
    var nullMessage = false

    @Option(name: [.customShort("q"), .customLong("qos")], help: "The QoS of the messages (default: 0).")
    var qos: Int = 0

    @Flag(name: [.customShort("r"), .customLong("retain")], help: "Make the messages retained.")
    var retain = false

    @Option(name: [.customShort("M"), .customLong("max-inflight")], help: "The most QoS 1/2 messages waiting for acknowledgement at once.")
    var maximumInflight: Int?

    @Option(
        name: .customLong("outbox"),
        help: ArgumentHelp("Keep messages in this SQLite file until acknowledged, across crashes and restarts.", valueName: "file")
    )
    var outbox: String?

    func validate() throws {
        try client.validateCommon()
        _ = try PropertyArguments(words: client.propertyWords, allowed: [.connect, .publish, .will], commandName: "databus pub")
        guard let topic else { throw ValidationError("Give the topic to publish to with -t.") }
        do {
            try TopicName.validate(topic)
        } catch {
            throw ValidationError("Invalid topic '\(topic)': \(error)")
        }
        let sources = [message != nil, file != nil, standardInputLines, standardInputFile, nullMessage].filter { $0 }.count
        if sources == 0 { throw ValidationError("Give the message with one of -m, -f, -l, -n or -s.") }
        if sources > 1 { throw ValidationError("Give only one of -m, -f, -l, -n and -s: one kind of message at a time.") }
        guard qos >= 0, QoS(rawValue: UInt8(clamping: qos)) != nil else { throw ValidationError("Invalid QoS \(qos): it must be 0, 1 or 2.") }
        if let maximumInflight, maximumInflight < 1 { throw ValidationError("Invalid -M \(maximumInflight): give 1 or more.") }
    }

    func run() async throws {
        let console = ClientConsole(quiet: client.quiet)
        let logger = ClientConsole.bootstrapLogging(client, label: "databus.pub")
        let properties = try PropertyArguments(words: client.propertyWords, allowed: [.connect, .publish, .will], commandName: "databus pub")
        let topic = self.topic ?? ""
        let qos = QoS(rawValue: UInt8(self.qos)) ?? .atMostOnce

        // The one message is read before connecting, as mosquitto_pub does.
        var single: ByteBuffer?
        if let message {
            single = ByteBuffer(string: message)
        } else if let file {
            guard let contents = FileManager.default.contents(atPath: file) else {
                console.error("Error: cannot read \(file).")
                throw ExitCode.failure
            }
            single = ByteBuffer(bytes: contents)
        } else if nullMessage {
            single = ByteBuffer()
        } else if standardInputFile {
            let input: [UInt8]
            do {
                input = try StandardInput.readAll()
            } catch {
                console.error("Error: \(error)")
                throw ExitCode.failure
            }
            guard !input.isEmpty else {
                console.error("Error: standard input is empty; -n publishes an empty message.")
                throw ExitCode.failure
            }
            single = ByteBuffer(bytes: input)
        }

        var configuration = try client.makeConfiguration(defaultIdentifierPrefix: "databus-pub-", properties: properties)
        configuration.reconnect = ClientConsole.reconnectPolicy
        if let maximumInflight { configuration.maximumInflightMessages = maximumInflight }
        if let outbox {
            do {
                configuration.outbox = OutboxConfiguration(persistence: try SQLiteOutboxPersistence(path: outbox))
            } catch {
                console.error("Error: cannot open the outbox \(outbox): \(error)")
                throw ExitCode.failure
            }
        }
        let mqtt = MQTTClient(configuration: configuration, logger: logger)
        do {
            try await mqtt.connect()
        } catch {
            throw console.connectionFailed(error, configuration: configuration)
        }

        let publisher = Publisher(client: mqtt, topic: topic, qos: qos, retain: retain, properties: Properties(properties.publish), console: console)
        do {
            if let single {
                try await publisher.publish(single)
            } else {
                for try await lines in StandardInput.lineBatches() {
                    try await publisher.publish(lines)
                }
            }
            try await publisher.waitForAll()
            if outbox != nil {
                // Messages restored from the outbox have no waiting caller: wait until they are gone too.
                while await mqtt.outboxStatistics.messages > 0 { try await Task.sleep(for: .milliseconds(10)) }
            }
        } catch {
            console.error("Error: \(error)")
            await mqtt.disconnect()
            throw ExitCode.failure
        }
        await mqtt.disconnect()
        if publisher.refused > 0 { throw ExitCode.failure }
    }
}

/// Hands messages to the client and checks their acknowledgements, keeping a bounded number
/// waiting so that a long standard input flows through without filling the outbox.
///
/// Lines go to the client in batches (``MQTTClient/enqueue(batch:)``): one call and one
/// waiter per batch, not per line.
private final class Publisher {
    let client: MQTTClient
    let topic: String
    let qos: QoS
    let retain: Bool
    let properties: Properties
    let console: ClientConsole
    private var waiting = Deque<(ticket: PublishBatchTicket, count: Int)>()
    private var waitingMessages = 0
    private(set) var refused = 0

    /// The most messages handed over and not yet acknowledged.
    static let window = 1_000

    init(client: MQTTClient, topic: String, qos: QoS, retain: Bool, properties: Properties, console: ClientConsole) {
        self.client = client
        self.topic = topic
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.console = console
    }

    /// Publishes one message and waits for its acknowledgement.
    func publish(_ payload: ByteBuffer) async throws {
        try await publish([payload])
        try await waitForAll()
    }

    /// Hands a batch of messages over; waits while more than ``window`` are unacknowledged.
    func publish(_ payloads: [ByteBuffer]) async throws {
        let messages = payloads.map {
            MQTTClient.OutgoingMessage(topic: topic, payload: $0, qos: qos, retain: retain, properties: properties)
        }
        waiting.append((try await client.enqueue(batch: messages), messages.count))
        waitingMessages += messages.count
        while waitingMessages > Self.window { try await checkOldest() }
    }

    func waitForAll() async throws {
        while !waiting.isEmpty { try await checkOldest() }
    }

    private func checkOldest() async throws {
        guard let oldest = waiting.popFirst() else { return }
        let ticket = oldest.ticket
        waitingMessages -= oldest.count
        for (offset, outcome) in try await ticket.results().enumerated() {
            let result = try outcome.get()
            guard !result.isSuccess else { continue }
            refused += 1
            let reason = result.properties.reasonString.map { " (\($0))" } ?? ""
            console.error(
                "Error: the broker refused message \(ticket.sequences.lowerBound + UInt64(offset)) on \(topic): \(result.reasonCode)\(reason)."
            )
        }
    }
}

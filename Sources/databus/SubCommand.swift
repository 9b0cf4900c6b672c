import ArgumentParser
import Foundation
import MQTTClient
import MQTTCore
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `databus sub`: subscribe and print messages, with mosquitto_sub's flags and output.
struct SubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sub",
        abstract: "Subscribe to topics and print the messages, as mosquitto_sub does.",
        discussion: """
            The flags, the output and the exit codes are mosquitto_sub's, so scripts written for it \
            keep working: -v prints "topic payload", -F prints a format (%t topic, %p payload, %q QoS, \
            %r retain, %l length, %m message id, %x/%X hex payload, %I ISO time, %U Unix time, \
            %j/%J JSON, %C %D %E %F %P %R %S %A MQTT 5 properties; @ strftime sequences, @N \
            nanoseconds; \\n \\t \\0 \\e escapes). -h is the host; --help prints this help. Without \
            -V the client speaks MQTT 3.1.1, as mosquitto_sub does; -D implies MQTT 5. A lost \
            connection is re-established (1 s doubling to 30 s) and the subscriptions made again.

            Exit codes: 0 after -C messages, -E or --retained-only, or on SIGINT/SIGTERM; 27 when -W \
            runs out; the CONNACK return code (3.1.1) or reason code (5) when the broker refuses the \
            connection; 1 for other errors; 64 for bad flags.

            Examples:
              databus sub -h broker.local -t 'lprserver/#' -v
              databus sub -t lprserver/cameras/7/health -C 1 -W 10
              databus sub -V mqttv5 -t 'lprserver/cameras/+/detection' -F '%I %t %p'
              databus sub -t alerts -u lpr-server --jwt-command 'cat /run/secrets/token'
            """,
        helpNames: [.long]
    )

    @OptionGroup var client: ClientOptions

    @Option(name: [.customShort("t"), .customLong("topic")], help: "A topic filter to subscribe to; may be repeated.")
    var topics: [String] = []

    @Option(name: [.customShort("q"), .customLong("qos")], help: "The QoS to subscribe with (default: 0).")
    var qos: Int = 0

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Print the topic, a space and the payload.")
    var verbose = false

    @Option(name: .customShort("F"), parsing: .unconditional, help: "Print each message in this format (see above); overrides -v.")
    var format: String?

    @Flag(name: .customShort("N"), help: "Do not print a newline after each message.")
    var noEndOfLine = false

    @Option(name: .customShort("C"), help: "Exit (0) after this many messages.")
    var count: Int?

    @Option(name: .customShort("W"), help: "Exit (27) this many seconds after connecting.")
    var timeout: Int?

    @Flag(name: [.customShort("R"), .customLong("no-stale")], help: "Do not print retained (stale) messages.")
    var noRetained = false

    @Flag(name: .customLong("retained-only"), help: "Print only retained messages; exit (0) at the first one that is not.")
    var retainedOnly = false

    @Option(name: [.customShort("T"), .customLong("filter-out")], help: "Do not print messages whose topic matches this filter; may be repeated.")
    var filterOut: [String] = []

    @Option(name: [.customShort("U"), .customLong("unsubscribe")], help: "Unsubscribe from this filter after subscribing; may be repeated.")
    var unsubscribe: [String] = []

    @Flag(name: .customShort("E"), help: "Exit (0) once the broker has acknowledged the subscriptions.")
    var exitAfterSubscribing = false

    func validate() throws {
        try client.validateCommon()
        _ = try PropertyArguments(
            words: client.propertyWords,
            allowed: [.connect, .subscribe, .unsubscribe, .will],
            commandName: "databus sub"
        )
        if topics.isEmpty && unsubscribe.isEmpty { throw ValidationError("Give a topic to subscribe to with -t.") }
        for filter in topics + filterOut + unsubscribe {
            do {
                if try SharedSubscription.parse(filter) == nil { try TopicFilter.validate(filter) }
            } catch {
                throw ValidationError("Invalid topic filter '\(filter)': \(error)")
            }
        }
        guard QoS(rawValue: UInt8(clamping: max(qos, 0))) != nil, qos >= 0 else { throw ValidationError("Invalid QoS \(qos): it must be 0, 1 or 2.") }
        if let count, count < 1 { throw ValidationError("Invalid -C \(count): give a count of 1 or more.") }
        if let timeout, !(1...2_147_483).contains(timeout) { throw ValidationError("Invalid -W \(timeout): give 1 or more seconds.") }
        if noRetained && retainedOnly { throw ValidationError("-R and --retained-only cannot be used together.") }
        if let format { _ = try MessageFormat(format) }
    }

    /// How a run ends.
    private enum Ending: Sendable {
        case finished
        case timedOut
        case signalled
        case clientStopped
    }

    func run() async throws {
        let console = ClientConsole(quiet: client.quiet)
        let logger = ClientConsole.bootstrapLogging(client, label: "databus.sub")
        let properties = try PropertyArguments(
            words: client.propertyWords,
            allowed: [.connect, .subscribe, .unsubscribe, .will],
            commandName: "databus sub"
        )
        var configuration = try client.makeConfiguration(defaultIdentifierPrefix: "databus-sub-", properties: properties)
        configuration.reconnect = ClientConsole.reconnectPolicy
        let mqtt = MQTTClient(configuration: configuration, logger: logger)
        let messages = mqtt.messages
        do {
            try await mqtt.connect()
        } catch {
            throw console.connectionFailed(error, configuration: configuration)
        }
        // Trapped once connected, so that until then SIGINT stops the command at once.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let connectedAt = ContinuousClock.now

        let ending: Ending
        do {
            ending = try await withThrowingTaskGroup(of: Ending.self) { group in
                group.addTask {
                    for await _ in signals { return .signalled }
                    return .signalled
                }
                if let timeout {
                    group.addTask {
                        try await Task.sleep(until: connectedAt + .seconds(timeout), clock: .continuous)
                        return .timedOut
                    }
                }
                group.addTask {
                    try await subscribe(mqtt, properties: properties, console: console)
                    if exitAfterSubscribing { return .finished }
                    return await printMessages(messages, console: console)
                }
                defer { group.cancelAll() }
                return try await group.next() ?? .finished
            }
        } catch let exit as ExitCode {
            await mqtt.disconnect()
            throw exit
        } catch {
            console.error("Error: \(error)")
            await mqtt.disconnect()
            throw ExitCode.failure
        }
        await mqtt.disconnect()
        switch ending {
        case .finished, .signalled:
            return
        case .timedOut:
            console.error("Timed out")
            throw ExitCode(27)
        case .clientStopped:
            console.error("Error: the client stopped")
            throw ExitCode.failure
        }
    }

    /// Subscribes to every `-t` in one SUBSCRIBE, then unsubscribes every `-U`.
    private func subscribe(_ mqtt: MQTTClient, properties: PropertyArguments, console: ClientConsole) async throws {
        if !topics.isEmpty {
            let options = SubscriptionOptions(qos: QoS(rawValue: UInt8(qos)) ?? .atMostOnce)
            let codes = try await mqtt.subscribe(
                topics.map { Subscription(topicFilter: $0, options: options) },
                properties: Properties(properties.subscribe)
            )
            for (topic, code) in zip(topics, codes) where code.isFailure {
                console.error("Error: the broker refused the subscription to \(topic): \(code)")
            }
            if codes.allSatisfy(\.isFailure) {
                console.error("Error: the broker refused every subscription.")
                throw ExitCode.failure
            }
        }
        if !unsubscribe.isEmpty {
            try await mqtt.unsubscribe(unsubscribe, properties: Properties(properties.unsubscribe))
        }
    }

    /// Prints messages until the count is reached or `--retained-only` sees a fresh one.
    private func printMessages(_ messages: MQTTMessages, console: ClientConsole) async -> Ending {
        let printer = MessagePrinter(format: try? format.map(MessageFormat.init), verbose: verbose, endOfLine: !noEndOfLine)
        var printed = 0
        for await message in messages {
            if retainedOnly && !message.retain { return .finished }
            if noRetained && message.retain { continue }
            if filterOut.contains(where: { TopicFilter.matches($0, name: message.topic) }) { continue }
            ClientConsole.writeOutput(printer.render(message) { console.error($0) })
            printed += 1
            if let count, printed >= count { return .finished }
        }
        return Task.isCancelled ? .finished : .clientStopped
    }
}

/// Turns a message into the bytes mosquitto_sub prints for it.
struct MessagePrinter {
    let format: MessageFormat?
    let verbose: Bool
    let endOfLine: Bool

    func render(_ message: MQTTMessage, warn: (String) -> Void) -> [UInt8] {
        let newline: [UInt8] = endOfLine ? [0x0A] : []
        if let format {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return format.render(message, at: now, warn: warn) + newline
        }
        let payload = Array(message.payload.readableBytesView)
        if verbose {
            // An empty payload shows as "(null)", and not at all with -N, as mosquitto_sub does.
            if payload.isEmpty { return endOfLine ? Array("\(message.topic) (null)\n".utf8) : [] }
            return Array(message.topic.utf8) + [UInt8(ascii: " ")] + payload + newline
        }
        return payload.isEmpty ? [] : payload + newline
    }
}

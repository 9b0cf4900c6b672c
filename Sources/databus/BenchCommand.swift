import ArgumentParser
import DatabusTools
import Foundation
import MQTTCore

/// `databus bench`: a load generator that drives any MQTT broker and measures it.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Drive an MQTT broker with a load scenario and measure throughput, latency, losses and the broker's CPU and memory.",
        discussion: """
            Scenarios:
              fanin   N publishers on lprserver/cameras/{i}/detection -> subscribers on lprserver/cameras/+/detection
              fanout  1 publisher -> M subscribers on one topic (--subscribers M)
              pairs   N publisher/subscriber pairs, a topic each
              conns   open --connections N idle connections and hold them for --duration
              wake    as conns, each connection subscribed to one topic at QoS 1; after --duration one
                      message to all of them: its latency to each (p50, p99, max; parked connections
                      come back for it), and copies lost or duplicated
              ingest  --publishers N simulated cameras publish seed-format detections (QoS 1) to a running
                      LPR server and wait for each detection/ack: detections stored and acked per second,
                      publish -> ack latency (--inflight: detections waiting per camera; --rate per camera)
              client  the client side, against a running broker: `mosquitto_pub -l` and `databus pub -l` at
                      QoS 1 and 0 (and `databus pub -l --outbox`) on the same --messages lines of --size bytes,
                      each --rounds times (median); MQTTClient into and through a SQLite outbox at QoS 1; a
                      --backlog stored while offline and drained to the broker, with this process's RSS
            Every payload carries its send time and a sequence number: latency goes into an HDR \
            histogram; lost, duplicated and reordered messages are counted. With --broker-pid the \
            broker's CPU and RSS are read from /proc. Prints a table, then one JSON line.

            Examples:
              databus bench fanin --qos 1 --publishers 8 --inflight 32 --duration 10
              databus bench fanout --subscribers 50 --broker-pid $(pidof mosquitto)
              databus bench fanin --qos 1 --rate 1000 --publishers 8    # latency at 8,000 msg/s
              databus bench conns --connections 10000 --broker-pid 1234
              databus bench wake --connections 10000 --duration 15
              databus bench ingest --publishers 20 --duration 10 --server-pid $(pidof databus)
              databus bench client --port 1883 --messages 100000 --size 80 --backlog 360000
            """
    )

    @Argument(help: "fanin, fanout, pairs, conns, wake, ingest or client.")
    var scenario: String

    @Option(name: .customLong("host"), help: "Broker host.")
    var host = "127.0.0.1"

    @Option(name: .customLong("port"), help: "Broker port.")
    var port = 1883

    @Option(help: "QoS of every message: 0, 1 or 2.")
    var qos = 0

    @Option(help: "Payload bytes (at least 20).")
    var size = 600

    @Option(help: "Messages per second per publisher; 0 = as fast as the in-flight window allows.")
    var rate = 0

    @Option(help: "QoS 1/2 messages in flight per publisher.")
    var inflight = 32

    @Option(help: "Seconds of load.")
    var duration = 10.0

    @Option(help: "Publishers (fanin, pairs).")
    var publishers = 8

    @Option(help: "Subscribers (fanin, fanout).")
    var subscribers = 1

    @Option(help: "Connections to hold (conns, wake).")
    var connections = 1_000

    @Option(name: .customLong("keep-alive"), help: "Keep alive of the held connections, in seconds (conns, wake; 0 = none).")
    var keepAlive: UInt16 = 60

    @Option(name: .customLong("mqtt-version"), help: "3.1.1 or 5.")
    var mqttVersion = "3.1.1"

    @Option(name: .customLong("broker-pid"), help: "The broker's process id, for its CPU and RSS.")
    var brokerPID: Int32?

    @Option(name: .customLong("server-pid"), help: "The LPR server's process id, for its CPU and RSS (ingest).")
    var serverPID: Int32?

    @Option(help: "A name for the broker in the report.")
    var label = "broker"

    @Flag(help: "Connect with TLS.")
    var tls = false

    @Option(help: "CA certificate file (PEM) for TLS.")
    var cafile: String?

    @Option(help: "Client certificate file (PEM) for TLS.")
    var cert: String?

    @Option(help: "Client key file (PEM) for TLS.")
    var key: String?

    @Option(help: "Lines (and outbox messages) per run (client).")
    var messages = 100_000

    @Option(help: "Messages stored while offline, then drained (client).")
    var backlog = 360_000

    @Option(help: "Runs per command, the median reported (client).")
    var rounds = 2

    @Flag(help: "Print only the JSON line.")
    var json = false

    func validate() throws {
        guard scenario == "client" || BenchConfiguration.Scenario(rawValue: scenario) != nil else {
            throw ValidationError("unknown scenario \(scenario); use fanin, fanout, pairs, conns, wake, ingest or client")
        }
        if scenario == "client" {
            guard size >= 1, messages >= 1, backlog >= 1, rounds >= 1 else {
                throw ValidationError("--size, --messages, --backlog and --rounds must be at least 1")
            }
            return
        }
        guard (0...2).contains(qos) else { throw ValidationError("--qos must be 0, 1 or 2") }
        guard size >= BenchConfiguration.minimumSize else { throw ValidationError("--size must be at least \(BenchConfiguration.minimumSize)") }
        guard duration > 0 else { throw ValidationError("--duration must be positive") }
        guard ["3.1.1", "311", "mqttv311", "5", "mqttv5"].contains(mqttVersion) else {
            throw ValidationError("--mqtt-version must be 3.1.1 or 5")
        }
        guard inflight >= 1, publishers >= 1, subscribers >= 1, connections >= 1, rate >= 0 else {
            throw ValidationError("--inflight, --publishers, --subscribers and --connections must be at least 1, --rate at least 0")
        }
    }

    func run() async throws {
        if scenario == "ingest" { return try await runIngest() }
        if scenario == "client" { return try await runClient() }
        var configuration = BenchConfiguration()
        configuration.scenario = BenchConfiguration.Scenario(rawValue: scenario)!
        configuration.host = host
        configuration.port = port
        configuration.qos = QoS(rawValue: UInt8(qos))!
        configuration.size = size
        configuration.rate = rate
        configuration.inflight = inflight
        configuration.duration = .milliseconds(Int(duration * 1000))
        configuration.publishers = publishers
        configuration.subscribers = subscribers
        configuration.connections = connections
        configuration.connectionKeepAlive = keepAlive
        configuration.version = mqttVersion.hasSuffix("5") ? .v5 : .v3_1_1
        configuration.brokerPID = brokerPID
        configuration.label = label
        if tls || cafile != nil || cert != nil {
            configuration.tls = BenchTLS(caFile: cafile, certificateFile: cert, keyFile: key)
        }
        do {
            let report = try await BenchRunner(configuration: configuration).run()
            if !json { print(report.table) }
            print(report.json)
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// The LPR ingest scenario.
    private func runIngest() async throws {
        var configuration = IngestBench.Configuration()
        configuration.host = host
        configuration.port = port
        configuration.version = mqttVersion.hasSuffix("5") ? .v5 : .v3_1_1
        configuration.cameras = publishers
        configuration.rate = rate
        configuration.window = inflight
        configuration.duration = duration
        configuration.brokerPID = brokerPID
        configuration.serverPID = serverPID
        do {
            let report = try await IngestBench(configuration: configuration).run()
            if !json { print(report.table) }
            print(report.jsonLine)
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// The client scenario.
    private func runClient() async throws {
        var configuration = ClientBench.Configuration()
        configuration.host = host
        configuration.port = port
        configuration.messages = messages
        configuration.size = size
        configuration.backlog = backlog
        configuration.rounds = rounds
        do {
            let report = try await ClientBench(configuration: configuration).run()
            if !json { print(report.table) }
            print(report.json)
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

import ArgumentParser
import EdgeAgents
import Foundation
import Logging
import MQTTClient

/// `databus pipeline`: the video pipeline's MQTT publisher.
struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Publish a video pipeline's inference metadata, and its frames, over MQTT.",
        discussion: """
            Does the job of the DL Streamer Pipeline Server's MQTT publisher: one message per frame \
            on the configured topic. The configuration file is JSON whose `mqtt_publisher` object \
            takes the pipeline server's options:
              publish_frame  false  true publishes [metadata, "base64 JPEG"] instead of the metadata alone
              topic          dlstreamer_pipeline_results
              qos            0      0, 1 or 2
              protocol       4      3 (MQTT 3.1), 4 (3.1.1) or 5
              filter         none   {"type": "detection"|"classification", "label_score": {"label": 0.5}}
              tls            none   {"ca_cert": FILE, "client_key": FILE, "client_cert": FILE} (mutual TLS)

            Metadata comes as JSON lines, one per frame (DL Streamer's `objects` or Geti's \
            `predictions`), from a file or `-` for standard input. Frames come as {frame_id}.jpg \
            files in --frames DIR, or as an MJPEG stream (--mjpeg FILE, or `-`: what \
            `ffmpeg -i video -f mjpeg -` writes), where the n-th JPEG (from 0) is frame n. A line \
            without frame_id is frame n for the n-th line.

            The filter removes results below their label's threshold (labels not listed pass); a \
            frame whose results were all removed is not published, one that had none is. Everything \
            else is published as it came.

            While the broker is unreachable, frames wait in a bounded queue (--queue-frames, \
            --queue-bytes; the oldest is dropped, and each drop is logged and counted) or in a \
            durable SQLite outbox (--outbox); the client reconnects after 1 s, doubling to 30 s. The \
            input never waits for the broker then.

            The broker is MQTT_HOST / MQTT_PORT (environment or the .env file), unless --host / \
            --port are given. Exits 0 once every frame of the input is published (QoS 1/2: \
            acknowledged); 1 when frames were dropped or refused; 64 for a bad configuration.

            Examples:
              databus pipeline --config config.json --metadata results.jsonl --frames frames/
              ffmpeg -i cam.mp4 -f mjpeg - | databus pipeline --config config.json --metadata results.jsonl --mjpeg -
              MQTT_HOST=broker.lan databus pipeline --config config.json --metadata - --outbox /var/lib/pipeline/outbox.db
            """
    )

    @Option(help: ArgumentHelp("The pipeline configuration (JSON with an mqtt_publisher object).", valueName: "file"))
    var config: String

    @Option(help: ArgumentHelp("Metadata as JSON lines, one per frame; - for standard input.", valueName: "file"))
    var metadata: String

    @Option(help: ArgumentHelp("A folder of {frame_id}.jpg files.", valueName: "dir"))
    var frames: String?

    @Option(help: ArgumentHelp("An MJPEG stream of the frames; - for standard input.", valueName: "file"))
    var mjpeg: String?

    @Option(help: "The broker's host (default: MQTT_HOST, else localhost).")
    var host: String?

    @Option(help: "The broker's port (default: MQTT_PORT, else 1883, or 8883 with tls).")
    var port: Int?

    @Option(help: ArgumentHelp("Keep frames in this SQLite file until the broker has them, across restarts.", valueName: "file"))
    var outbox: String?

    @Option(name: .customLong("queue-frames"), help: "The most frames kept while the broker is unreachable.")
    var queueFrames = 1000

    @Option(name: .customLong("queue-bytes"), help: "The most bytes kept while the broker is unreachable.")
    var queueBytes = 256 * 1024 * 1024

    @Option(name: .customLong("client-id"), help: "The MQTT client identifier (default: pipeline- and 8 random hex digits).")
    var clientIdentifier: String?

    @Option(name: .customLong("env-file"), help: ArgumentHelp("A .env file with MQTT_HOST and MQTT_PORT.", valueName: "file"))
    var environmentFile = ".env"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        if frames != nil && mjpeg != nil { throw ValidationError("Give --frames or --mjpeg, not both.") }
        if metadata == "-" && mjpeg == "-" { throw ValidationError("--metadata and --mjpeg cannot both read standard input.") }
        if let port, !(1...65_535).contains(port) { throw ValidationError("Invalid port \(port): it must be 1 to 65535.") }
        if queueFrames < 1 || queueBytes < 1 { throw ValidationError("--queue-frames and --queue-bytes must be 1 or more.") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("Invalid --log-level \(logLevel).") }
    }

    func run() async throws {
        let logger = AgentLogging.bootstrap(label: "databus.pipeline", level: logLevel)
        let pipeline: PipelineConfiguration
        do {
            pipeline = try PipelineConfiguration(contentsOfFile: config)
        } catch {
            AgentLogging.fail("Error: \(error)")
            throw ExitCode.validationFailure
        }
        let host: String
        let port: Int
        do {
            var flags: [String: String] = [:]
            if let host = self.host { flags["MQTT_HOST"] = host }
            if let port = self.port { flags["MQTT_PORT"] = String(port) }
            let settings = try await AgentSettings(flags: flags, environmentFile: environmentFile)
            host = settings.string("MQTT_HOST") ?? "localhost"
            port = try settings.port("MQTT_PORT") ?? (pipeline.tls == nil ? 1883 : 8883)
        } catch {
            AgentLogging.fail("Error: \(error)")
            throw ExitCode.validationFailure
        }
        if pipeline.publishFrame && frames == nil && mjpeg == nil {
            logger.warning("publish_frame is on but neither --frames nor --mjpeg is given: publishing metadata alone")
        }

        let options = PipelinePublisher.Options(
            host: host,
            port: port,
            clientIdentifier: clientIdentifier,
            outboxPath: outbox,
            queueMessages: queueFrames,
            queueBytes: queueBytes
        )
        let publisher: PipelinePublisher
        let lines: AsyncThrowingStream<String, any Error>
        var source: (any FrameSource)?
        do {
            publisher = try PipelinePublisher(configuration: pipeline, options: options, logger: logger)
            lines = try EdgeInput.lines(metadata)
            if let frames { source = FolderFrameSource(directory: frames) }
            if let mjpeg { source = try MJPEGFrameSource(path: mjpeg) }
        } catch {
            AgentLogging.fail("Error: \(error)")
            throw ExitCode.failure
        }
        let statistics = try await publisher.run(metadata: lines, frames: source)
        if let stream = source as? MJPEGFrameSource, let error = stream.error {
            logger.error("the MJPEG stream ended early: \(error)")
        }
        AgentLogging.report("databus pipeline: \(statistics)")
        if statistics.dropped > 0 || statistics.failed > 0 { throw ExitCode.failure }
    }
}

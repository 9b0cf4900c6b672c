import Crypto
import DatabusTestSupport
import EdgeAgents
import Foundation
import Testing

/// `databus pipeline` run as users run it, against databus broker and mosquitto, with frames
/// made by ffmpeg and ImageMagick and decoded again by a paho-mqtt subscriber with Pillow.
@Suite("databus pipeline end to end", .serialized, .timeLimit(.minutes(5)))
struct PipelineCommandTests {
    /// DL Streamer metadata for frame `id`: a person and a car; numbers in several forms.
    static func dlstreamerLine(_ id: Int, withFrameID: Bool = true) -> String {
        let frame = withFrameID ? #","frame_id":\#(id)"# : ""
        return
            #"{"objects":[{"detection":{"bounding_box":{"x_max":0.5,"x_min":0.1,"y_max":0.9,"y_min":0.2},"confidence":0.9,"label":"person","label_id":1},"h":100,"roi_type":"person","w":50,"x":10,"y":20},{"detection":{"confidence":0.30,"label":"car","label_id":2},"roi_type":"car","x":300,"y":200}],"resolution":{"height":240,"width":320},"timestamp":2,"tags":{"site":"gate 1","ratio":1.0}\#(frame)}"#
    }

    static func configuration(_ publisher: String) -> String { #"{"mqtt_publisher": \#(publisher)}"# }

    struct RunResult {
        let status: Int32
        let output: String
        let errorOutput: String
    }

    func runPipeline(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(60)) async throws -> RunResult {
        let databus = try DatabusBrokerProcess.executable()
        if let input {
            let base = NSTemporaryDirectory() + "pipeline-\(UUID().uuidString)"
            defer {
                try? FileManager.default.removeItem(atPath: base + ".out")
                try? FileManager.default.removeItem(atPath: base + ".err")
            }
            let child = try ChildProcess.spawn(
                databus,
                ["pipeline"] + arguments,
                inputPath: input,
                outputPath: base + ".out",
                errorPath: base + ".err"
            )
            let status = await child.wait(timeout: timeout)
            return RunResult(
                status: status,
                output: (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
                errorOutput: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
            )
        }
        let result = try await runProgramCollectingErrors(databus, ["pipeline"] + arguments, timeout: timeout)
        return RunResult(status: result.status, output: result.output, errorOutput: result.errorOutput)
    }

    static func sha256(ofFile path: String) throws -> String {
        SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).map { String(format: "%02x", $0) }.joined()
    }

    @Test(
        "an ffmpeg MJPEG stream and its metadata arrive as [metadata, JPEG] that paho decodes, at MQTT 3.1, 3.1.1 and 5",
        arguments: BrokerKind.allCases,
        [3, 4, 5]
    )
    func mjpegFrames(broker kind: BrokerKind, protocolLevel: Int) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try await Media.mjpeg(folder.file("video.mjpeg"), count: 6)
        let frames = try folder.makeWritableFolder("frames")
        try await Media.jpegFiles(frames, count: 6)
        // Half the lines name their frame, half are paired by their position.
        let lines = (0..<6).map { Self.dlstreamerLine($0, withFrameID: $0 % 2 == 0) }
        let metadata = try folder.write("results.jsonl", lines.joined(separator: "\n") + "\n")
        let config = try folder.write(
            "config.json",
            Self.configuration(#"{"publish_frame": true, "qos": 1, "protocol": \#(protocolLevel), "topic": "dlstreamer_pipeline_results"}"#)
        )
        try await kind.with { broker in
            let subscriber = try await PahoSubscriber.start(
                port: broker.port,
                topic: "dlstreamer_pipeline_results",
                protocolLevel: protocolLevel,
                in: folder
            )
            defer { Task { await subscriber.stop() } }
            let result = try await runPipeline([
                "--config", config, "--metadata", metadata, "--mjpeg", folder.file("video.mjpeg"), "--host", "127.0.0.1", "--port", "\(broker.port)",
            ])
            #expect(result.status == 0, "\(result.errorOutput)")
            #expect(result.errorOutput.contains("published 6"))
            let messages = await subscriber.messages(count: 6)
            #expect(messages.count == 6, "\(subscriber.errors)")
            for (index, message) in messages.enumerated() {
                #expect(message["error"] == nil, "\(message.jsonText)")
                #expect(message["qos"] == .number("1"))
                #expect(message["image"]?["width"] == .number("320"))
                #expect(message["image"]?["height"] == .number("240"))
                #expect(message["image"]?["format"] == .string("JPEG"))
                #expect(message["image"]?["sha256"] == .string(try Self.sha256(ofFile: "\(frames)/\(index).jpg")), "frame \(index)")
                // The metadata arrives exactly as it was given: 2 stays 2, 1.0 stays 1.0, 0.30 stays 0.30.
                #expect(message["metadata_text"] == .string(lines[index]))
            }
        }
    }

    @Test("ffmpeg piping MJPEG into --mjpeg - while the metadata comes from a file, as in the field", arguments: BrokerKind.allCases)
    func mjpegFromStandardInput(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let lines = (0..<8).map { Self.dlstreamerLine($0, withFrameID: false) }
        let metadata = try folder.write("results.jsonl", lines.joined(separator: "\n") + "\n")
        let config = try folder.write("config.json", Self.configuration(#"{"publish_frame": true, "qos": 1}"#))
        let databus = try DatabusBrokerProcess.executable()
        try await kind.with { broker in
            let subscriber = try await PahoSubscriber.start(port: broker.port, topic: "dlstreamer_pipeline_results", in: folder)
            defer { Task { await subscriber.stop() } }
            let command =
                "ffmpeg -nostdin -loglevel error -f lavfi -i testsrc=size=640x480:rate=10 -frames:v 8 -q:v 3 -f mjpeg - | "
                + "'\(databus)' pipeline --config '\(config)' --metadata '\(metadata)' --mjpeg - --port \(broker.port)"
            let result = try await runProgramCollectingErrors("sh", ["-c", command], timeout: .seconds(60))
            #expect(result.status == 0, "\(result.errorOutput)")
            let messages = await subscriber.messages(count: 8)
            #expect(messages.count == 8)
            #expect(messages.allSatisfy { $0["image"]?["width"] == .number("640") && $0["image"]?["format"] == .string("JPEG") })
            #expect(messages.map { $0["metadata_text"] } == lines.map { .string($0) })
        }
    }

    @Test("ImageMagick frames in a folder, Geti metadata and the detection filter at QoS 2", arguments: BrokerKind.allCases)
    func folderFramesWithFilter(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let frames = try folder.makeWritableFolder("frames")
        for (id, colour) in [(10, "red"), (11, "lime"), (12, "blue")] {
            try await Media.magickJPEG("\(frames)/\(id).jpg", width: 640, height: 480, colour: colour)
        }
        let geti = try Fixtures.exampleText("pipeline-metadata-detection.json").trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = [
            geti.replacingOccurrences(of: #""frame_id": 0"#, with: #""frame_id": 10"#),
            // Both annotations are below 0.95 here: the frame goes.
            geti.replacingOccurrences(of: #""frame_id": 0"#, with: #""frame_id": 11"#).replacingOccurrences(of: "0.9196773171424866", with: "0.5"),
            #"{"frame_id": 12, "predictions": {"kind": "prediction", "annotations": []}}"#,
        ]
        let metadata = try folder.write("results.jsonl", lines.joined(separator: "\n") + "\n")
        let config = try folder.write(
            "config.json",
            Self.configuration(
                #"{"publish_frame": true, "qos": 2, "filter": {"type": "detection", "label_score": {"box": 0.6, "shipping label": 0.95}}}"#
            )
        )
        try await kind.with { broker in
            let subscriber = try await PahoSubscriber.start(port: broker.port, topic: "dlstreamer_pipeline_results", in: folder)
            defer { Task { await subscriber.stop() } }
            let result = try await runPipeline(["--config", config, "--metadata", metadata, "--frames", frames, "--port", "\(broker.port)"])
            #expect(result.status == 0, "\(result.errorOutput)")
            #expect(result.errorOutput.contains("filtered out 1"))
            #expect(result.errorOutput.contains("box 1/1, shipping label 0/2"))
            let messages = await subscriber.messages(count: 2)
            try #require(messages.count == 2, "\(subscriber.errors)")
            #expect(messages.map { $0["metadata"]?["frame_id"] } == [.number("10"), .number("12")])
            #expect(messages.map { $0["qos"] } == [.number("2"), .number("2")])
            // Frame 10 keeps the box (0.92 >= 0.6) and loses the shipping label (0.74 < 0.95).
            let annotations = messages[0]["metadata"]?["predictions"]?["annotations"]?.arrayValue ?? []
            #expect(annotations.compactMap { $0["labels"]?.arrayValue?.first?["name"] } == [.string("box")])
            #expect(messages[0]["image"]?["width"] == .number("640"))
            let red = messages[0]["image"]?["pixel"]?.arrayValue?.compactMap(\.intValue) ?? []
            #expect(red.count == 3 && red[0] > 240 && red[1] < 20 && red[2] < 20, "frame 10 is red: \(red)")
            #expect((messages[1]["image"]?["pixel"]?.arrayValue?.last?.intValue ?? 0) > 240, "frame 12 is blue")
        }
    }

    @Test("metadata alone from standard input at QoS 0 on a topic of our own, MQTT_HOST/MQTT_PORT from a .env file", arguments: BrokerKind.allCases)
    func standardInputMetadataOnly(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let lines = (0..<50).map { Self.dlstreamerLine($0) } + ["this line is not JSON", #"{"frame_id": "seven"}"#]
        let metadata = try folder.write("results.jsonl", lines.joined(separator: "\n") + "\n")
        let config = try folder.write("config.json", Self.configuration(#"{"topic": "site/cam7/results", "protocol": 5}"#))
        try await kind.with { broker in
            let environment = try folder.write(".env", "MQTT_HOST=127.0.0.1\nMQTT_PORT=\(broker.port)\n")
            let subscriber = try await PahoSubscriber.start(port: broker.port, topic: "site/+/results", protocolLevel: 5, in: folder)
            defer { Task { await subscriber.stop() } }
            let result = try await runPipeline(["--config", config, "--metadata", "-", "--env-file", environment], input: metadata)
            #expect(result.status == 0, "\(result.errorOutput)")
            #expect(result.errorOutput.contains("invalid 2"))
            #expect(result.errorOutput.contains("skipping metadata line 51"))
            let messages = await subscriber.messages(count: 50)
            #expect(messages.count == 50)
            #expect(messages.allSatisfy { $0["qos"] == .number("0") && $0["topic"] == .string("site/cam7/results") && $0["image"] == nil })
            #expect(messages.first?["metadata_text"] == .string(lines[0]))
        }
    }

    @Test("mutual TLS: the pipeline presents its certificate to a broker with require_certificate", arguments: BrokerKind.allCases)
    func mutualTLS(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let certificates = try await makeCertificates(in: folder, clients: ["pipeline", "subscriber"])
        let metadata = try folder.write("results.jsonl", (0..<3).map { Self.dlstreamerLine($0) }.joined(separator: "\n") + "\n")
        let config = try folder.write(
            "config.json",
            Self.configuration(
                #"{"qos": 1, "tls": {"ca_cert": "\#(certificates)/pipeline/ca.crt", "client_key": "\#(certificates)/pipeline/pipeline.key", "client_cert": "\#(certificates)/pipeline/pipeline.crt"}}"#
            )
        )
        let noClientCertificate = try folder.write(
            "anonymous.json",
            Self.configuration(#"{"qos": 1, "tls": {"ca_cert": "\#(certificates)/pipeline/ca.crt"}}"#)
        )
        try await kind.with(extraConfiguration: mutualTLSConfiguration(certificates)) { broker in
            let subscriber = try await PahoSubscriber.start(
                port: broker.port,
                topic: "dlstreamer_pipeline_results",
                in: folder,
                tls: ("\(certificates)/subscriber/ca.crt", "\(certificates)/subscriber/subscriber.crt", "\(certificates)/subscriber/subscriber.key")
            )
            defer { Task { await subscriber.stop() } }
            // The host is 127.0.0.1, which the broker certificate names.
            let result = try await runPipeline(["--config", config, "--metadata", metadata, "--host", "127.0.0.1", "--port", "\(broker.port)"])
            #expect(result.status == 0, "\(result.errorOutput)")
            #expect(await subscriber.messages(count: 3).count == 3)
            // Without a client certificate the broker refuses the connection: nothing is published.
            let refused = try await runPipeline(
                ["--config", noClientCertificate, "--metadata", metadata, "--host", "127.0.0.1", "--port", "\(broker.port)"],
                timeout: .seconds(3)
            )
            #expect(refused.status != 0)
            #expect(subscriber.received.count == 3)
        }
    }

    @Test("while the broker is down the bounded queue keeps the newest frames, and every drop is counted and logged", arguments: BrokerKind.allCases)
    func boundedQueueDrops(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let metadata = try folder.write("results.jsonl", (0..<20).map { Self.dlstreamerLine($0) }.joined(separator: "\n") + "\n")
        let config = try folder.write("config.json", Self.configuration(#"{"qos": 1}"#))
        try await kind.with { broker in
            await broker.terminate()
            let errors = folder.file("pipeline.err")
            let pipeline = try ChildProcess.spawn(
                try DatabusBrokerProcess.executable(),
                ["pipeline", "--config", config, "--metadata", metadata, "--port", "\(broker.port)", "--queue-frames", "5"],
                errorPath: errors
            )
            let log = { (try? String(contentsOfFile: errors, encoding: .utf8)) ?? "" }
            // The input is read through at once although nothing can be sent.
            #expect(await waitFor("dropped=15", in: log))
            try await broker.restart()
            let status = await pipeline.wait(timeout: .seconds(60))
            #expect(status == 1, "frames were dropped: exit status 1")
            let drops = log().split(separator: "\n").filter { $0.contains("dropped the oldest frame") }
            #expect(drops.count == 15)
            #expect(log().contains("published 5,"), "\(log())")
            #expect(log().contains("dropped 15"))
            for frame in 0..<15 {
                #expect(drops.contains { $0.contains("frame=\(frame) ") || $0.hasSuffix("frame=\(frame)") }, "drop of frame \(frame)")
            }
        }
    }

    @Test("with --outbox frames wait durably while the broker is down and all arrive once it is back")
    func durableOutbox() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let metadata = try folder.write("results.jsonl", (0..<30).map { Self.dlstreamerLine($0) }.joined(separator: "\n") + "\n")
        let config = try folder.write("config.json", Self.configuration(#"{"qos": 1}"#))
        try await DatabusBrokerProcess.with { broker in
            await broker.terminate()
            let errors = folder.file("pipeline.err")
            // A first run is killed while the broker is down: its frames stay in the outbox file.
            let first = try ChildProcess.spawn(
                try DatabusBrokerProcess.executable(),
                ["pipeline", "--config", config, "--metadata", metadata, "--port", "\(broker.port)", "--outbox", folder.file("outbox.db")],
                errorPath: errors
            )
            try await Task.sleep(for: .seconds(2))
            first.signal(SIGKILL)
            await first.wait()
            try await broker.restart()
            let subscriber = try await PahoSubscriber.start(port: broker.port, topic: "dlstreamer_pipeline_results", in: folder)
            defer { Task { await subscriber.stop() } }
            // The second run sends what the first left, then its own input.
            let empty = try folder.write("empty.jsonl", "")
            let second = try await runPipeline(
                ["--config", config, "--metadata", empty, "--port", "\(broker.port)", "--outbox", folder.file("outbox.db")]
            )
            #expect(second.status == 0, "\(second.errorOutput)")
            let messages = await subscriber.messages(count: 30)
            #expect(messages.map { $0["metadata"]?["frame_id"]?.intValue ?? -1 } == Array(0..<30))
        }
    }

    @Test("bad input gets a clear error and exit status, never a crash")
    func badInput() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let broken = try folder.write("broken.json", #"{"mqtt_publisher": {"qos": 7}}"#)
        let result = try await runPipeline(["--config", broken, "--metadata", "-"])
        #expect(result.status == 64)
        #expect(result.errorOutput.contains("mqtt_publisher.qos"))
        let config = try folder.write("config.json", Self.configuration("{}"))
        let missing = try await runPipeline(["--config", config, "--metadata", folder.file("nothing.jsonl")])
        #expect(missing.status == 1)
        #expect(missing.errorOutput.contains("cannot open"))
        let garbage = try folder.write("garbage.mjpeg", String(repeating: "not a jpeg ", count: 100))
        let lines = try folder.write("one.jsonl", Self.dlstreamerLine(0) + "\n")
        let withFrame = try folder.write("frame.json", Self.configuration(#"{"publish_frame": true}"#))
        try await DatabusBrokerProcess.with { broker in
            let result = try await runPipeline(["--config", withFrame, "--metadata", lines, "--mjpeg", garbage, "--port", "\(broker.port)"])
            #expect(result.status == 0)
            #expect(result.errorOutput.contains("no JPEG for frame"))
        }
    }
}

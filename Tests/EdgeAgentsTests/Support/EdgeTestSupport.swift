import DatabusTestSupport
import EdgeAgents
import Foundation
import LPRModel
import Testing

/// The two brokers every agent is tested against.
enum BrokerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case databus
    case mosquitto

    var testDescription: String { self == .databus ? "databus broker" : "mosquitto" }

    /// Starts this broker with `extraConfiguration` (mosquitto.conf lines), runs `body`, stops it by PID.
    func with(extraConfiguration: String = "", _ body: (any TestBroker) async throws -> Void) async throws {
        switch self {
        case .databus: try await DatabusBrokerProcess.with(extraConfiguration: extraConfiguration) { try await body($0) }
        case .mosquitto: try await Mosquitto.with(extraConfiguration: extraConfiguration) { try await body($0) }
        }
    }
}

/// An executable built next to the tests (`databus`, `traffic-lights`).
func builtExecutable(_ name: String) throws -> String {
    let databus = try DatabusBrokerProcess.executable()
    let path = URL(fileURLWithPath: databus).deletingLastPathComponent().appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw InteropError("\(name) is not built next to the tests: run `swift build` first")
    }
    return path
}

/// Waits until `read()` contains `text`, up to `timeout`.
func waitFor(_ text: String, within timeout: Duration = .seconds(15), in read: () -> String) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if read().contains(text) { return true }
        try? await Task.sleep(for: .milliseconds(25))
    }
    return read().contains(text)
}

/// Certificates from `databus certs create` for a broker on 127.0.0.1 and clients `names`,
/// readable by mosquitto's user.
func makeCertificates(in folder: TemporaryDirectory, clients: [String]) async throws -> String {
    let directory = folder.file("certs")
    var arguments = ["certs", "create", "--out", directory]
    for client in clients { arguments += ["--client", client] }
    let result = try await runProgramCollectingErrors(try DatabusBrokerProcess.executable(), arguments)
    guard result.status == 0 else { throw InteropError("databus certs failed: \(result.errorOutput)") }
    _ = try await runProgram("chmod", ["-R", "a+rX", folder.path])
    return directory
}

/// mosquitto.conf lines for a TLS listener that requires a client certificate.
func mutualTLSConfiguration(_ certificates: String) -> String {
    """
    cafile \(certificates)/broker/ca.crt
    certfile \(certificates)/broker/broker.crt
    keyfile \(certificates)/broker/broker.key
    require_certificate true
    """
}

/// A paho-mqtt subscriber in Python that decodes what it receives: JSON, and for
/// `[metadata, base64 JPEG]` messages the JPEG with Pillow. One JSON line per message.
final class PahoSubscriber: Sendable {
    let process: ChildProcess
    let outputPath: String
    let errorPath: String

    static let script = #"""
        import sys, os, json, base64, io, hashlib, ssl
        import paho.mqtt.client as mqtt
        from PIL import Image
        host, port, topic, protocol, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
        tls = sys.argv[6:9] if len(sys.argv) > 8 else None
        versions = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-sub", protocol=versions[protocol])
        if tls:
            client.tls_set(ca_certs=tls[0], certfile=tls[1] or None, keyfile=tls[2] or None)
        if os.environ.get("PAHO_USERNAME"):
            client.username_pw_set(os.environ["PAHO_USERNAME"], os.environ.get("PAHO_PASSWORD"))
        out = open(out_path, "a")
        def on_connect(c, userdata, flags, reason, properties=None):
            c.subscribe(topic, qos=2)
        def on_subscribe(c, userdata, mid, reasons, properties=None):
            print("subscribed", flush=True)
        def on_message(c, userdata, message):
            entry = {"topic": message.topic, "qos": message.qos}
            try:
                text = message.payload.decode()
                document = json.loads(text)
                if isinstance(document, list):
                    entry["metadata"] = document[0]
                    jpeg = base64.b64decode(document[1])
                    image = Image.open(io.BytesIO(jpeg))
                    image.load()
                    entry["image"] = {"width": image.width, "height": image.height, "format": image.format,
                                      "sha256": hashlib.sha256(jpeg).hexdigest(), "pixel": list(image.convert("RGB").getpixel((100, 100)))}
                    entry["metadata_text"] = text[1:text.rindex(',"')]
                else:
                    entry["metadata"] = document
                    entry["metadata_text"] = text
            except Exception as error:
                entry["error"] = repr(error)
                entry["payload"] = message.payload.decode(errors="replace")[:500]
            out.write(json.dumps(entry) + "\n")
            out.flush()
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect(host, port)
        client.loop_forever()
        """#

    private init(process: ChildProcess, outputPath: String, errorPath: String) {
        self.process = process
        self.outputPath = outputPath
        self.errorPath = errorPath
    }

    /// Starts the subscriber and waits until its subscription is granted.
    static func start(
        port: Int,
        topic: String,
        protocolLevel: Int = 4,
        in folder: TemporaryDirectory,
        name: String = "sub",
        tls: (ca: String, certificate: String, key: String)? = nil,
        username: String? = nil,
        password: String? = nil
    ) async throws -> PahoSubscriber {
        let script = try folder.write("paho_subscriber.py", script)
        var arguments = [script, "127.0.0.1", "\(port)", topic, "\(protocolLevel)", folder.file("\(name).jsonl")]
        if let tls { arguments += [tls.ca, tls.certificate, tls.key] }
        let ready = folder.file("\(name).ready")
        let errors = folder.file("\(name).err")
        var environment: [String] = []
        if let username { environment.append("PAHO_USERNAME=\(username)") }
        if let password { environment.append("PAHO_PASSWORD=\(password)") }
        let process = try ChildProcess.spawn("env", environment + ["python3"] + arguments, outputPath: ready, errorPath: errors)
        let subscriber = PahoSubscriber(process: process, outputPath: folder.file("\(name).jsonl"), errorPath: errors)
        guard await waitFor("subscribed", in: { (try? String(contentsOfFile: ready, encoding: .utf8)) ?? "" }) else {
            await process.terminate()
            throw InteropError("the paho subscriber did not subscribe: \(subscriber.errors)")
        }
        return subscriber
    }

    var errors: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    /// The messages received so far.
    var received: [JSONValue] {
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONValue.parse(String($0)) }
    }

    /// Waits until `count` messages arrived (or `timeout` passed) and returns them.
    func messages(count: Int, within timeout: Duration = .seconds(30)) async -> [JSONValue] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let messages = received
            if messages.count >= count { return messages }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return received
    }

    func stop() async {
        await process.terminate()
    }
}

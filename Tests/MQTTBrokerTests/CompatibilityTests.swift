import DatabusTestSupport
import Foundation
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Behaviour that clients written against mosquitto 2.0.11 rely on: keep alive 0 under
/// `max_keepalive`, and a disconnected client reading why it was disconnected.
@Suite("Compatibility with mosquitto 2.0.11 clients", .serialized)
struct CompatibilityTests {
    /// A paho-mqtt 3.1.1 client with keep alive 0 (no pings): connects, subscribes and gets its
    /// own QoS 1 message back; prints the CONNACK result and the message.
    private static let pahoKeepAliveZero = """
        import sys, threading
        import paho.mqtt.client as mqtt
        port = int(sys.argv[1])
        got = threading.Event()
        def on_connect(client, userdata, flags, reason_code, properties):
            print(f"connack|{reason_code}", flush=True)
            if not reason_code.is_failure:
                client.subscribe("paho/keepalive", qos=1)
        def on_subscribe(client, userdata, mid, reason_codes, properties):
            client.publish("paho/keepalive", b"no pings", qos=1)
        def on_message(client, userdata, message):
            print(f"message|{message.payload.decode()}", flush=True)
            got.set()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-no-pings", protocol=mqtt.MQTTv311)
        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        client.connect("127.0.0.1", port, keepalive=0)
        client.loop_start()
        got.wait(10)
        client.disconnect()
        client.loop_stop()
        """

    private func runPahoKeepAliveZero(port: Int) async throws -> String {
        let result = try await runProgram("python3", ["-c", Self.pahoKeepAliveZero, "\(port)"])
        #expect(result.status == 0)
        return result.output
    }

    @Test("paho-mqtt 3.1.1 with keep alive 0 under max_keepalive 60 connects and exchanges messages, as with mosquitto 2.0.11")
    func keepAliveZeroUnderMaximum() async throws {
        var outputs: [String] = []
        try await Mosquitto.with(extraConfiguration: "max_keepalive 60") { mosquitto in
            outputs.append(try await runPahoKeepAliveZero(port: mosquitto.port))
        }
        try await withBroker(.testing { $0.maxKeepalive = 60 }) { port in
            outputs.append(try await runPahoKeepAliveZero(port: port))
        }
        #expect(outputs[0] == "connack|Success\nmessage|no pings\n", "mosquitto 2.0.11")
        #expect(outputs[1] == outputs[0], "databus broker answers as mosquitto does")
    }

    @Test("3.1.1: a client with keep alive 0 under max_keepalive is not timed out")
    func keepAliveZeroNotTimedOut() async throws {
        try await withBroker(.testing { $0.maxKeepalive = 1 }) { port in
            let (client, connack) = try await connect(port: port, "silent-camera", version: .v3_1_1, keepAlive: 0)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .success)
            // 1.5 × max_keepalive would have closed a client held to it.
            try await Task.sleep(for: .seconds(2))
            try await client.expectNothingPending("the connection is still open and quiet")
        }
    }

    /// Writes QoS 0 PUBLISH packets on `connection` as fast as it takes them until a write fails.
    private func flood(_ connection: CodecConnection) -> Task<Int, Never> {
        Task {
            let packet = MQTTPacket.publish(PublishPacket(topicName: "lpr/cam-7/frames", payload: ByteBuffer(repeating: 0x2A, count: 600)))
            let batch = Array(repeating: packet, count: 64)
            var written = 0
            while !Task.isCancelled {
                do {
                    try await connection.send(batch)
                    written += batch.count
                } catch {
                    return written
                }
            }
            return written
        }
    }

    @Test("a client still sending when it is taken over reads DISCONNECT 0x8E and then the end of the stream, not a reset")
    func disconnectWhileSending() async throws {
        try await withBroker { port in
            let camera = try await connectAccepted(port: port, "cam-7")
            defer { Task { await camera.close() } }
            let writer = flood(camera)
            try await Task.sleep(for: .milliseconds(200))
            let replacement = try await connectAccepted(port: port, "cam-7")
            defer { Task { await replacement.close() } }

            var packets: [MQTTPacket] = []
            var ending = ""
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                do {
                    packets.append(try await camera.receive(within: 1))
                } catch let error as InteropError {
                    ending = error.description
                    if ending.hasPrefix("connection closed") { break }
                }
            }
            writer.cancel()
            #expect(await writer.value > 0)
            #expect(packets == [.disconnect(DisconnectPacket(reasonCode: .sessionTakenOver))])
            #expect(ending == "connection closed: end of stream")
        }
    }

    @Test("paho-mqtt 5.0 publishing in a loop when it is taken over gets reason code 0x8E in on_disconnect")
    func pahoReadsReasonCode() async throws {
        let script = """
            import sys, threading, time
            import paho.mqtt.client as mqtt
            port = int(sys.argv[1])
            gone = threading.Event()
            def on_disconnect(client, userdata, flags, reason_code, properties):
                print(f"disconnect|{reason_code.value}", flush=True)
                gone.set()
            camera = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-cam", protocol=mqtt.MQTTv5)
            camera.on_disconnect = on_disconnect
            camera.connect("127.0.0.1", port)
            camera.loop_start()
            payload = bytes(600)
            deadline = time.time() + 1.0
            while time.time() < deadline:
                camera.publish("lpr/paho-cam/frames", payload, qos=0)
            replacement = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-cam", protocol=mqtt.MQTTv5)
            replacement.connect("127.0.0.1", port)
            while not gone.is_set() and time.time() < deadline + 10:
                camera.publish("lpr/paho-cam/frames", payload, qos=0)
            camera.loop_stop()
            replacement.disconnect()
            """
        try await withBroker { port in
            let result = try await runProgram("python3", ["-c", script, "\(port)"])
            #expect(result.status == 0)
            #expect(result.output == "disconnect|142\n")
        }
    }
}

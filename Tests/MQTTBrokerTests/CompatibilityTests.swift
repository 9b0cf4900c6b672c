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

    /// A paho-mqtt 5.0 QoS 2 publisher with a backlog, and the broker (persistence on) stopped
    /// and started again under it. The script runs the broker process itself and prints how
    /// many messages had completed (PUBCOMP) before the restart and in all.
    private static let pahoQoS2AcrossRestart = """
        import socket, subprocess, signal, sys, time
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        executable, config, port, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        def start():
            broker = subprocess.Popen([executable, "broker", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(400):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.025)
            return broker
        broker = start()
        try:
            done = set()
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-qos2", protocol=mqtt.MQTTv5)
            client.on_publish = lambda c, userdata, mid, reason_code, properties: done.add(mid)
            client.reconnect_delay_set(min_delay=1, max_delay=1)
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            client.connect("127.0.0.1", port, clean_start=False, properties=properties)
            client.loop_start()
            for number in range(total):
                client.publish("paho/qos2", str(number).encode(), qos=2)
            time.sleep(0.3)
            before = len(done)
            broker.send_signal(signal.SIGTERM)
            broker.wait()
            broker = start()
            deadline = time.time() + 90
            while len(done) < total and time.time() < deadline:
                time.sleep(0.2)
            print(f"{before}|{len(done)}", flush=True)
            client.loop_stop()
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait()
        """

    @Test("paho-mqtt 5.0 with a QoS 2 backlog carries on when the broker restarts under it: every message completes")
    func pahoQoS2BacklogAcrossRestart() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let port = try await freePort()
        let configuration = folder.file("broker.conf")
        try "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location \(folder.path)/\nlog_dest none\n"
            .write(toFile: configuration, atomically: true, encoding: .utf8)
        let total = 20_000
        let result = try await runProgram(
            "python3",
            ["-c", Self.pahoQoS2AcrossRestart, try databusExecutable(), configuration, "\(port)", "\(total)"],
            timeout: .seconds(150)
        )
        #expect(result.status == 0)
        let counts = result.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").compactMap { Int($0) }
        #expect(counts.count == 2, "\(result.output)")
        guard counts.count == 2 else { return }
        // Before the fix paho went over the receive maximum again on every reconnect and was
        // disconnected with 0x93: 555 of 60,000 in a minute.
        #expect(counts[0] < total, "every message completed before the restart: the restart tested nothing")
        #expect(counts[1] == total, "\(counts[1]) of \(total) QoS 2 messages completed")
    }
}

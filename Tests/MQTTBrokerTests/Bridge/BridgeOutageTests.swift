import DatabusTestSupport
import Foundation
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// The outage the bridge's store-and-forward is for, scaled down: 100 cameras publish QoS 1
/// detections to an edge `databus broker` while its uplink (a mosquitto, the central broker) is
/// down; the edge is killed with SIGKILL in the middle of it and restarted; once the central
/// broker is back, a paho-mqtt subscriber there must get every detection the edge acknowledged,
/// in order per camera.
///
/// `DATABUS_BRIDGE_SOAK_MESSAGES` sets how many (36,000 by default: 100 cameras × 360);
/// `DATABUS_BRIDGE_SOAK_PACED=1` publishes them at one per camera per second, as the real
/// cameras do (360,000 paced is the full hour).
@Suite("Bridge store-and-forward through an outage", .serialized)
struct BridgeOutageTests {
    static let cameras = 100

    /// What one camera got acknowledged, and where to go on from.
    struct CameraProgress: Sendable {
        var acknowledged: [Int] = []
        var nextSequence = 1
    }

    /// Publishes `camera`'s detections `from`...`through` at QoS 1, 20 in flight, until done or
    /// the connection fails (the edge was killed).
    static func publish(
        camera: Int,
        port: Int,
        progress: CameraProgress,
        through last: Int,
        paced: Bool,
        acknowledgedTotal: NIOLockedValueBox<Int>
    ) async -> CameraProgress {
        var progress = progress
        guard progress.nextSequence <= last else { return progress }
        guard let connection = try? await connectAccepted(port: port, "camera-\(camera)", version: .v3_1_1) else { return progress }
        defer { Task { await connection.close() } }
        var inFlight: [UInt16: Int] = [:]
        var identifier: UInt16 = 0
        let window = 20
        do {
            while progress.nextSequence <= last || !inFlight.isEmpty {
                while progress.nextSequence <= last && inFlight.count < window {
                    identifier = identifier == UInt16.max ? 1 : identifier + 1
                    let sequence = progress.nextSequence
                    let payload = "cam\(camera)-\(sequence)"
                    try await connection.send(
                        .publish(
                            PublishPacket(
                                topicName: "lpr/cam\(camera)/detections",
                                payload: ByteBuffer(string: payload),
                                qos: .atLeastOnce,
                                packetIdentifier: identifier
                            )
                        )
                    )
                    inFlight[identifier] = sequence
                    progress.nextSequence += 1
                    if paced { break }
                }
                let packet = try await connection.receive(within: 30)
                if case .puback(let ack) = packet, let sequence = inFlight.removeValue(forKey: ack.packetIdentifier) {
                    progress.acknowledged.append(sequence)
                    acknowledgedTotal.withLockedValue { $0 += 1 }
                    if paced { try await Task.sleep(for: .seconds(1)) }
                }
            }
        } catch {
            // The edge went away: what was not acknowledged is not owed.
        }
        return progress
    }

    /// Runs every camera at once.
    static func publishAll(
        port: Int,
        progress: [CameraProgress],
        through last: Int,
        paced: Bool,
        acknowledgedTotal: NIOLockedValueBox<Int>
    ) async -> [CameraProgress] {
        await withTaskGroup(of: (Int, CameraProgress).self) { group in
            for camera in 0..<cameras {
                group.addTask {
                    (
                        camera,
                        await publish(
                            camera: camera,
                            port: port,
                            progress: progress[camera],
                            through: last,
                            paced: paced,
                            acknowledgedTotal: acknowledgedTotal
                        )
                    )
                }
            }
            var result = progress
            for await (camera, done) in group { result[camera] = done }
            return result
        }
    }

    /// The resident set size of process `pid`, in bytes.
    static func residentBytes(_ pid: pid_t) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) })
        else { return 0 }
        return kilobytes * 1024
    }

    /// A paho-mqtt subscriber on the central broker: a persistent session, reconnecting on its
    /// own, writing `topic payload` lines until it is stopped.
    static let subscriberScript = """
        import sys, threading
        import paho.mqtt.client as mqtt
        port, path = int(sys.argv[1]), sys.argv[2]
        out = open(path, "w", buffering=1)
        def on_connect(client, userdata, flags, reason, properties):
            client.subscribe("site7/lpr/#", qos=1)
        def on_subscribe(client, userdata, mid, reasons, properties):
            out.write("subscribed\\n")
        def on_message(client, userdata, message):
            out.write(f"{message.topic} {message.payload.decode()}\\n")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lpr-server", clean_session=False, protocol=mqtt.MQTTv311)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_forever()
        """

    /// What the subscriber's file shows: per camera, the sequence numbers in order of first
    /// arrival, how many distinct detections and how many lines.
    static func arrivals(in path: String) -> (firstArrivals: [Int: [Int]], distinct: Int, lines: Int) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return ([:], 0, 0) }
        var firstArrivals: [Int: [Int]] = [:]
        var seen = Set<Substring>()
        var lines = 0
        for line in text.split(separator: "\n") where line.hasPrefix("site7/") {
            lines += 1
            guard let payload = line.split(separator: " ").last, seen.insert(payload).inserted else { continue }
            let parts = payload.dropFirst(3).split(separator: "-")
            guard parts.count == 2, let camera = Int(parts[0]), let sequence = Int(parts[1]) else { continue }
            firstArrivals[camera, default: []].append(sequence)
        }
        return (firstArrivals, seen.count, lines)
    }

    /// Acknowledged detections that have not arrived.
    static func missing(_ progress: [CameraProgress], _ firstArrivals: [Int: [Int]]) -> Int {
        var missing = 0
        for camera in 0..<cameras {
            let arrived = Set(firstArrivals[camera] ?? [])
            missing += progress[camera].acknowledged.filter { !arrived.contains($0) }.count
        }
        return missing
    }

    @Test("100 cameras through an outage of the uplink and a SIGKILL of the edge: every acknowledged detection arrives, in order per camera")
    func outage() async throws {
        let environment = ProcessInfo.processInfo.environment
        let total = environment["DATABUS_BRIDGE_SOAK_MESSAGES"].flatMap { Int($0) } ?? 36_000
        let paced = environment["DATABUS_BRIDGE_SOAK_PACED"] == "1"
        let perCamera = max(2, total / Self.cameras)
        let expectedAtMost = perCamera * Self.cameras

        let folder = try TemporaryDirectory(prefix: "databus-bridge-outage")
        let centralStore = try folder.makeWritableFolder("central-store")
        let central = try await Mosquitto.start(
            extraConfiguration: """
                persistence true
                persistence_location \(centralStore)/
                max_queued_messages 0
                max_inflight_messages 100
                """
        )
        let edge: DatabusBrokerProcess
        do {
            edge = try await DatabusBrokerProcess.start(
                extraConfiguration: """
                    persistence true
                    persistence_location {DIRECTORY}/store
                    connection central
                    address 127.0.0.1:\(central.port)
                    notification_topic bridges/edge-7/state
                    restart_timeout 1
                    keepalive_interval 5
                    topic lpr/# out 1 "" site7/
                    """
            )
        } catch {
            await central.stop()
            throw error
        }
        let output = folder.file("received.txt")
        var subscriber: ChildProcess?
        do {
            // The central side: the LPR server's persistent subscription, then the bridge up.
            let script = try folder.write("subscriber.py", Self.subscriberScript)
            subscriber = try ChildProcess.spawn("python3", [script, "\(central.port)", output], errorPath: folder.file("subscriber.log"))
            try await waitForLine("subscribed", in: output, within: 20)
            try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "1")

            // The uplink goes down.
            await central.terminate()
            try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "0")

            // First half of the outage, with a SIGKILL of the edge in the middle of it.
            let acknowledgedTotal = NIOLockedValueBox(0)
            var progress = [CameraProgress](repeating: CameraProgress(), count: Self.cameras)
            let killer = Task {
                while acknowledgedTotal.withLockedValue({ $0 }) < expectedAtMost / 4 { try await Task.sleep(for: .milliseconds(20)) }
                await edge.kill()
            }
            progress = await Self.publishAll(
                port: edge.port,
                progress: progress,
                through: perCamera / 2,
                paced: paced,
                acknowledgedTotal: acknowledgedTotal
            )
            killer.cancel()
            let killed = (try? await killer.value) != nil
            #expect(killed, "the edge was not killed during the outage")
            let beforeKill = acknowledgedTotal.withLockedValue { $0 }
            try await edge.restart()

            // The rest of the outage on the restarted edge.
            progress = await Self.publishAll(
                port: edge.port,
                progress: progress,
                through: perCamera,
                paced: paced,
                acknowledgedTotal: acknowledgedTotal
            )
            let acknowledged = progress.reduce(0) { $0 + $1.acknowledged.count }
            let edgeMemory = Self.residentBytes(edge.pid)
            #expect(acknowledged > beforeKill)

            // The uplink comes back: the backlog drains.
            let drainStart = ContinuousClock.now
            try await central.restart()
            let timeout = Duration.seconds(paced ? 600 : 300)
            var arrivals = Self.arrivals(in: output)
            while Self.missing(progress, arrivals.firstArrivals) > 0 && ContinuousClock.now - drainStart < timeout {
                try await Task.sleep(for: .milliseconds(250))
                arrivals = Self.arrivals(in: output)
            }
            let drain = ContinuousClock.now - drainStart
            try await Task.sleep(for: .seconds(1))
            arrivals = Self.arrivals(in: output)

            let missing = Self.missing(progress, arrivals.firstArrivals)
            var outOfOrder = 0
            for sequences in arrivals.firstArrivals.values {
                outOfOrder += zip(sequences, sequences.dropFirst()).filter { $0 >= $1 }.count
            }
            #expect(missing == 0, "\(missing) acknowledged detections never arrived")
            #expect(outOfOrder == 0, "\(outOfOrder) detections arrived before an older one of the same camera")
            let seconds = Double(drain.components.seconds) + Double(drain.components.attoseconds) / 1e18
            // Figures, not assertions.
            print(
                "bridge outage: \(acknowledged) acknowledged (\(beforeKill) before the SIGKILL), \(arrivals.distinct) arrived, "
                    + "\(arrivals.lines - arrivals.distinct) duplicates; backlog drained in \(String(format: "%.1f", seconds)) s "
                    + "(\(Int(Double(arrivals.distinct) / seconds)) msg/s, debug build); edge RSS during the outage \(edgeMemory / 1_048_576) MiB"
            )
        } catch {
            if let subscriber { await subscriber.terminate() }
            await edge.stop()
            await central.stop()
            throw error
        }
        if let subscriber { await subscriber.terminate() }
        await edge.stop()
        await central.stop()
    }
}

/// Waits until the file at `path` has a line `line`.
func waitForLine(_ line: String, in path: String, within seconds: Double) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if let text = try? String(contentsOfFile: path, encoding: .utf8), text.split(separator: "\n").contains(where: { $0 == line }) { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw InteropError("no line \"\(line)\" in \(path) after \(seconds) s")
}

import DatabusTestSupport
import Foundation
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// The broker a crash test kills.
enum CrashedBroker: String, CaseIterable, Sendable {
    /// Debian's mosquitto, persistence by snapshot (autosave every second).
    case mosquitto
    /// Our `databus broker`, which writes QoS 1/2 messages to disk before acknowledging them.
    case databus
}

/// Fault tests: the broker killed with SIGKILL and restarted while messages flow.
@Suite("Broker crash", .serialized, .timeLimit(.minutes(2)))
struct BrokerCrashTests {
    static func start(_ kind: CrashedBroker, persistence: String) async throws -> any TestBroker {
        switch kind {
        case .mosquitto:
            // Sessions and messages reach the disk within a second of changing.
            return try await Mosquitto.start(
                extraConfiguration: "persistence true\npersistence_location \(persistence)/\nautosave_interval 1\nmax_queued_messages 0"
            )
        case .databus:
            return try await DatabusBrokerProcess.start(
                extraConfiguration: "persistence true\npersistence_location \(persistence)/\nmax_queued_messages 0"
            )
        }
    }

    @Test("10,000 numbered QoS 1 messages all arrive although the broker is killed twice mid-stream", arguments: CrashedBroker.allCases)
    func killedBroker(kind: CrashedBroker) async throws {
        let directory = try TemporaryDirectory(prefix: "databus-crash")
        defer { directory.remove() }
        let persistence = try directory.makeWritableFolder("persistence")
        let broker = try await Self.start(kind, persistence: persistence)
        do {
            try await Self.publishThroughCrashes(kind, broker: broker, persistence: persistence)
        } catch {
            await broker.stop()
            throw error
        }
        await broker.stop()
    }

    static func publishThroughCrashes(_ kind: CrashedBroker, broker: any TestBroker, persistence: String) async throws {
        // Durable sessions (mosquitto 2.0 saves only sessions begun without clean start).
        var serverConfiguration = MQTTClient.Configuration(host: "127.0.0.1", port: broker.port, clientIdentifier: "lpr-server")
        serverConfiguration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
        serverConfiguration.cleanStart = false
        serverConfiguration.sessionExpiry = .seconds(3600)
        try await withClient(serverConfiguration) { server in
            let detections = try await server.subscribe(to: "lprserver/cameras/+/detection", qos: .atLeastOnce)
            if kind == .mosquitto {
                // Wait until a snapshot made after the subscription is on disk, so it survives the first crash.
                let subscribed = Date()
                try await withDeadline(.seconds(10), "mosquitto's autosave after the subscription") {
                    while true {
                        let attributes = try? FileManager.default.attributesOfItem(atPath: "\(persistence)/mosquitto.db")
                        if let saved = attributes?[.modificationDate] as? Date, saved > subscribed.addingTimeInterval(0.1) { return }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
            }
            let counts = Counts()
            let receiving = Task {
                for await message in detections { await counts.record(Int(message.payloadString) ?? -1) }
            }
            defer { receiving.cancel() }

            var cameraConfiguration = serverConfiguration
            cameraConfiguration.clientIdentifier = "camera-1"
            var killedAfter: [(delivered: Int, acknowledged: Int)] = []
            try await withClient(cameraConfiguration) { camera in
                let crashes = Task {
                    var killedAfter: [(delivered: Int, acknowledged: Int)] = []
                    for threshold in [2_500, 6_000] {
                        try await withDeadline(.seconds(30), "\(threshold) messages before a crash") {
                            while await counts.distinct < threshold { try await Task.sleep(for: .milliseconds(1)) }
                        }
                        let delivered = await counts.highest
                        await broker.kill()
                        try await Task.sleep(for: .milliseconds(200))
                        // Every message the dead broker acknowledged has left the outbox (messages
                        // leave it in order); none can be acknowledged now.
                        let acknowledged = 10_000 - (await camera.outboxStatistics.messages)
                        killedAfter.append((delivered, acknowledged))
                        try await broker.restart()
                    }
                    return killedAfter
                }
                var tickets: [PublishTicket] = []
                for number in 0..<10_000 {
                    let payload = ByteBuffer(string: "\(number)")
                    tickets.append(try await camera.enqueue(topic: "lprserver/cameras/1/detection", payload: payload, qos: .atLeastOnce))
                }
                var unrouted = 0
                for ticket in tickets {
                    let result = try await ticket.result()
                    #expect(result.isSuccess)
                    // 0x10: the broker had no subscriber for it (the subscriber's session was lost).
                    if result.reasonCode == .noMatchingSubscribers { unrouted += 1 }
                }
                #expect(unrouted == 0, "\(unrouted) messages reached the broker while it had no subscriber")
                killedAfter = try await crashes.value
            }
            // Wait for the last messages, until all are in or none came for 2 s; what is missing
            // then is checked below.
            _ = try? await withDeadline(.seconds(30), "all 10,000 messages at the subscriber") {
                var last = -1
                var quietSince = ContinuousClock.now
                while await counts.distinct < 10_000 {
                    let now = await counts.distinct
                    if now != last {
                        last = now
                        quietSince = .now
                    } else if ContinuousClock.now - quietSince > .seconds(2) {
                        return
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            let missing = await counts.missing(upTo: 10_000)
            let duplicates = await counts.duplicates
            Attachment.record("\(missing.count) missing, \(duplicates) duplicates (allowed at QoS 1)", named: "\(kind).txt")
            switch kind {
            case .databus:
                #expect(missing.isEmpty, "missing \(missing.count): \(missing.prefix(20))")
            case .mosquitto:
                // mosquitto acknowledges QoS 1 from memory and saves snapshots, so a message it
                // acknowledged before kill -9 and had not passed on yet is gone with it; no client
                // can get it back. Anything else missing is the client's fault.
                let explained = missing.allSatisfy { number in
                    killedAfter.contains { number > $0.delivered && number < $0.acknowledged }
                }
                #expect(explained, "missing \(missing.count) away from the crashes at \(killedAfter): \(missing.prefix(20))")
            }
        }
    }
}

/// Which numbers arrived, and how often.
actor Counts {
    private var seen = Set<Int>()
    private(set) var duplicates = 0
    private(set) var highest = -1

    func record(_ number: Int) {
        if !seen.insert(number).inserted { duplicates += 1 }
        highest = max(highest, number)
    }

    var distinct: Int { seen.count }

    func missing(upTo count: Int) -> [Int] { (0..<count).filter { !seen.contains($0) } }
}

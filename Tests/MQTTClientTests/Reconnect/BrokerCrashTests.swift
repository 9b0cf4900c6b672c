import DatabusTestSupport
import Foundation
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// Fault tests: mosquitto killed with SIGKILL and restarted while messages flow.
@Suite("Broker crash", .serialized)
struct BrokerCrashTests {
    @Test("10,000 numbered QoS 1 messages all arrive although mosquitto is killed twice mid-stream")
    func killedBroker() async throws {
        let directory = try TemporaryDirectory(prefix: "databus-crash")
        defer { directory.remove() }
        let persistence = try directory.makeWritableFolder("persistence")
        // Sessions reach the disk within a second (a crash loses what came after the last save).
        let configuration = """
            persistence true
            persistence_location \(persistence)/
            autosave_interval 1
            max_queued_messages 0
            """
        try await Mosquitto.with(extraConfiguration: configuration) { broker in
            // Durable sessions: mosquitto 2.0 saves only sessions begun without clean start.
            var serverConfiguration = MQTTClient.Configuration.test(broker, id: "lpr-server")
            serverConfiguration.cleanStart = false
            serverConfiguration.sessionExpiry = .seconds(3600)
            try await withClient(serverConfiguration) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/+/detection", qos: .atLeastOnce)
                // Wait for the subscription to be saved, so it survives the first crash.
                try await withDeadline(.seconds(10), "mosquitto's first autosave") {
                    while !FileManager.default.fileExists(atPath: "\(persistence)/mosquitto.db") {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                let counts = Counts()
                let receiver = Task {
                    for await message in detections {
                        if await counts.record(Int(message.payloadString) ?? -1) == 10_000 { return }
                    }
                }

                var cameraConfiguration = MQTTClient.Configuration.test(broker, id: "camera-1")
                cameraConfiguration.cleanStart = false
                cameraConfiguration.sessionExpiry = .seconds(3600)
                try await withClient(cameraConfiguration) { camera in
                    let crashes = Task {
                        for threshold in [2_500, 6_000] {
                            while await counts.distinct < threshold { try await Task.sleep(for: .milliseconds(1)) }
                            await broker.kill()
                            try await Task.sleep(for: .milliseconds(200))
                            try await broker.restart()
                        }
                    }
                    var tickets: [PublishTicket] = []
                    for number in 0..<10_000 {
                        tickets.append(
                            try await camera.enqueue(
                                topic: "lprserver/cameras/1/detection",
                                payload: ByteBuffer(string: "\(number)"),
                                qos: .atLeastOnce
                            )
                        )
                    }
                    for ticket in tickets {
                        let result = try await ticket.result()
                        #expect(result.isSuccess)
                    }
                    try await crashes.value
                }
                try await withDeadline(.seconds(30), "all 10,000 messages at the subscriber") { await receiver.value }
                let missing = await counts.missing(upTo: 10_000)
                #expect(missing.isEmpty, "missing \(missing.count): \(missing.prefix(20))")
                let duplicates = await counts.duplicates
                // Duplicates are allowed at QoS 1; record how many there were.
                Attachment.record("\(duplicates) duplicates", named: "duplicates.txt")
            }
        }
    }
}

/// Which numbers arrived, and how often.
actor Counts {
    private var seen = Set<Int>()
    private(set) var duplicates = 0

    /// Records a number and returns how many distinct numbers have arrived.
    func record(_ number: Int) -> Int {
        if !seen.insert(number).inserted { duplicates += 1 }
        return seen.count
    }

    var distinct: Int { seen.count }

    func missing(upTo count: Int) -> [Int] { (0..<count).filter { !seen.contains($0) } }
}

import DatabusTestSupport
import Foundation
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// Fault test: the publishing process killed with SIGKILL mid-stream, and restarted with the
/// same SQLite outbox.
@Suite("databus pub --outbox survives SIGKILL", .serialized, .timeLimit(.minutes(3)))
struct PubOutboxCrashTests {
    @Test("numbered QoS 1 lines all arrive although databus pub --outbox is killed with SIGKILL twice mid-stream")
    func killedPublisher() async throws {
        try await Self.killTwice(total: 6_000, killAfter: [600, 1_800], minimumKept: 100)
    }

    @Test("100,000 numbered QoS 1 lines at full speed all arrive although databus pub --outbox is killed with SIGKILL twice")
    func killedPublisherAtSpeed() async throws {
        try await Self.killTwice(total: 100_000, killAfter: [20_000, 60_000], minimumKept: 100)
    }

    /// Publishes `total` numbered lines through `databus pub -l -q 1 --outbox`, kills it with
    /// SIGKILL once the subscriber has `killAfter[i]` distinct numbers (the broker paused just
    /// before, so messages pile up in the outbox), restarts it on the rest of the input with the
    /// same outbox, and checks that every number arrives.
    static func killTwice(total: Int, killAfter kills: [Int], minimumKept: Int) async throws {
        try await Mosquitto.with(extraConfiguration: "max_queued_messages 0") { broker in
            try await CommandRunner.with { runner in
                let outbox = runner.directory.file("camera-1-outbox.sqlite")
                let counts = Counts()
                try await withClient(.test(broker, id: "lpr-server")) { server in
                    let detections = try await server.subscribe(to: "lprserver/cameras/1/detection", qos: .atLeastOnce)
                    let receiving = Task {
                        for await message in detections { await counts.record(Int(message.payloadString) ?? -1) }
                    }
                    defer { receiving.cancel() }

                    let flags = [
                        "pub", "-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "lprserver/cameras/1/detection", "-q", "1", "-l",
                        "-i", "camera-1", "--outbox", outbox,
                    ]
                    var next = 0
                    var keptAtKills: [Int] = []
                    for killAfter in kills {
                        // Standard input holds the lines not handed to a publisher before.
                        let publisher = try runner.databus(flags, input: Self.lines(next..<total))
                        try await withDeadline(.seconds(60), "\(killAfter) messages before the kill") {
                            while await counts.distinct < killAfter { try await Task.sleep(for: .milliseconds(1)) }
                        }
                        // The broker stops answering, so messages pile up unacknowledged in the
                        // outbox (read from standard input, sent or waiting to be); then the kill.
                        broker.pause()
                        try await Task.sleep(for: .milliseconds(300))
                        publisher.process.signal(SIGKILL)
                        let status = await publisher.finish()
                        broker.resume()
                        #expect(status.status == 128 + SIGKILL, "the publisher ended before the kill: \(status.error)")
                        // Lines are handed to the outbox in order, so every number up to the
                        // highest one in the outbox (or seen at the subscriber) was handed over;
                        // the next publisher reads the lines after it.
                        let kept = try Self.outboxNumbers(outbox)
                        keptAtKills.append(kept.count)
                        #expect(kept.count >= minimumKept, "only \(kept.count) messages were waiting in the outbox at the kill")
                        next = max(await counts.highest, kept.max() ?? -1) + 1
                        #expect(next < total, "the publisher had read everything before the kill: not mid-stream")
                    }
                    let last = try runner.databus(flags, input: Self.lines(next..<total))
                    let finished = await last.finish(timeout: .seconds(60))
                    #expect(finished.status == 0, "\(finished.error)")
                    try await withDeadline(.seconds(30), "all \(total) numbers at the subscriber") {
                        while await counts.distinct < total { try await Task.sleep(for: .milliseconds(10)) }
                    }
                    let missing = await counts.missing(upTo: total)
                    let duplicates = await counts.duplicates
                    #expect(missing.isEmpty, "missing \(missing.count): \(missing.prefix(20))")
                    #expect(try Self.outboxNumbers(outbox).isEmpty, "the outbox is empty once everything was acknowledged")
                    Attachment.record(
                        "messages in the outbox at each kill: \(keptAtKills); \(duplicates) duplicates (allowed at QoS 1)",
                        named: "outbox-crash.txt"
                    )
                }
            }
        }
    }

    static func lines(_ numbers: Range<Int>) -> [UInt8] {
        Array(numbers.map { "\($0)\n" }.joined().utf8)
    }

    /// The numbers kept in the outbox file of a killed publisher.
    static func outboxNumbers(_ path: String) throws -> [Int] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let persistence = try SQLiteOutboxPersistence(path: path)
        return try persistence.loadEntries().map { Int(String(buffer: $0.payload)) ?? -1 }
    }
}

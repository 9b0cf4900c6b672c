import Foundation
import LPRModel
import Testing

@testable import LPRServer

@Suite("Camera health rules, without a broker")
struct CameraHealthRulesTests {
    let rules = CameraHealthRules(staleAfter: .seconds(90), cpuLimit: 90, memoryLimit: 95, diskLimit: 95, temperatureLimit: 80)
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    func health(_ status: CameraHealth.Status, cpu: Double = 20, temperature: Double = 40, disk: Double = 10) -> CameraHealth {
        CameraHealth(
            messageID: UUID().uuidString,
            timestamp: start,
            cameraID: "CAM1",
            status: status,
            cpuUsage: cpu,
            memoryUsage: 30,
            diskUsage: disk,
            lastDetection: nil,
            uptimeSeconds: 100,
            temperature: temperature
        )
    }

    @Test("the first health makes a camera known and online without an alert; problems are raised once and again after clearing")
    func problemsOnce() {
        var record = CameraRecord(cameraID: "CAM1")
        #expect(rules.health(health(.healthy), receivedAt: start, checkpointID: nil, record: &record) == [.appeared])
        #expect(record.online == true)
        #expect(record.firstSeen == start)
        let degraded = rules.health(health(.degraded, cpu: 95), receivedAt: start, checkpointID: nil, record: &record)
        #expect(degraded.count == 2)
        #expect(Set(degraded.compactMap { if case .problem(let key, _, _) = $0 { key } else { nil } }) == ["status", "cpu"])
        #expect(rules.health(health(.degraded, cpu: 97), receivedAt: start, checkpointID: nil, record: &record) == [])
        let partly = rules.health(health(.healthy, cpu: 97), receivedAt: start, checkpointID: nil, record: &record)
        #expect(partly == [.recovered(key: "status")])
        let unhealthy = rules.health(health(.unhealthy, cpu: 10, temperature: 81, disk: 99), receivedAt: start, checkpointID: nil, record: &record)
        #expect(unhealthy.contains(.recovered(key: "cpu")))
        #expect(unhealthy.contains { if case .problem("status", .critical, _) = $0 { true } else { false } })
        #expect(unhealthy.contains { if case .problem("temperature", .warning, _) = $0 { true } else { false } })
        #expect(unhealthy.contains { if case .problem("disk", .warning, _) = $0 { true } else { false } })
    }

    @Test("offline by will or by silence, once; back with the next online or health")
    func availability() {
        var record = CameraRecord(cameraID: "CAM1")
        #expect(rules.availability(.offline, receivedAt: start, record: &record) == [.wentOffline(reason: "its status says offline")])
        #expect(rules.availability(.offline, receivedAt: start, record: &record) == [])
        #expect(rules.availability(.online, receivedAt: start, record: &record) == [.cameBack])
        _ = rules.health(health(.healthy), receivedAt: start, checkpointID: nil, record: &record)
        #expect(rules.check(now: start.addingTimeInterval(89), record: &record) == [])
        let silent = rules.check(now: start.addingTimeInterval(91), record: &record)
        #expect(silent.count == 1)
        #expect(record.online == false)
        #expect(rules.check(now: start.addingTimeInterval(200), record: &record) == [])
        #expect(rules.health(health(.healthy), receivedAt: start.addingTimeInterval(201), checkpointID: nil, record: &record) == [.cameBack])
    }

    @Test("a camera that never sent health is not timed out")
    func noHealthNoStaleness() {
        var record = CameraRecord(cameraID: "CAM1")
        _ = rules.availability(.online, receivedAt: start, record: &record)
        #expect(rules.check(now: start.addingTimeInterval(10_000), record: &record) == [])
    }
}

@Suite("Control correlation, without a broker")
struct ControlCorrelatorTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func command(_ id: String, camera: String = "CAM1") -> ControlCommand {
        ControlCommand(messageID: id, timestamp: now, cameraID: camera, command: "ping")
    }

    @Test("an answer is matched by message_id or by correlation data, only from the commanded camera, once")
    func matching() {
        var correlator = ControlCorrelator()
        correlator.sent(command("a"), deadline: now.addingTimeInterval(10))
        correlator.sent(command("b"), deadline: now.addingTimeInterval(10))
        #expect(correlator.answer(cameraID: "CAM2", messageID: "a", correlation: nil) == nil)
        #expect(correlator.answer(cameraID: "CAM1", messageID: "a", correlation: nil)?.messageID == "a")
        #expect(correlator.answer(cameraID: "CAM1", messageID: "a", correlation: nil) == nil)
        #expect(correlator.answer(cameraID: "CAM1", messageID: nil, correlation: "b")?.messageID == "b")
        #expect(correlator.pending.isEmpty)
    }

    @Test("commands past their deadline time out; others wait")
    func timeouts() {
        var correlator = ControlCorrelator()
        correlator.sent(command("soon"), deadline: now.addingTimeInterval(1))
        correlator.sent(command("later"), deadline: now.addingTimeInterval(60))
        #expect(correlator.expire(now: now).isEmpty)
        #expect(correlator.expire(now: now.addingTimeInterval(2)).map(\.messageID) == ["soon"])
        #expect(correlator.answer(cameraID: "CAM1", messageID: "soon", correlation: nil) == nil)
        #expect(correlator.cancel(messageID: "later")?.messageID == "later")
    }
}

@Suite("Detection intake, without a broker")
struct DetectionIntakeTests {
    let matcher = WatchlistMatcher(entries: [WatchlistEntry(id: "w", plate: "ABC1234", reason: "stolen", level: .warning)])
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("a valid detection is accepted with its watch-list matches and one alert per match")
    func accepted() {
        let payload = #"""
            {"message_id":"m1","timestamp":"2024-01-15T10:30:00Z","camera_id":"CAM1","checkpoint_id":"CP1","detection_data":{"plates":[{"plate_number":"A8C1234"},{"plate_number":"ZZZ"}]}}
            """#
        guard
            case .accepted(let accepted) = DetectionIntake.evaluate(
                cameraID: "CAM1",
                payload: Array(payload.utf8),
                receivedAt: now,
                matcher: matcher,
                makeID: { "alert-1" }
            )
        else {
            Issue.record("refused")
            return
        }
        #expect(accepted.matches.map(\.kind) == [.confusable])
        #expect(accepted.record.alerts.map(\.alertID) == ["alert-1"])
        #expect(accepted.record.alerts.first?.level == .warning)
        #expect(accepted.record.plates.map(\.folded) == ["A8C1234", "222"])
        #expect(accepted.record.payload == payload)
    }

    @Test("refusals keep the message_id when there is one, so the camera can be told")
    func rejected() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        let cases: [(String, String?)] = [
            ("garbage", nil), (#"{"message_id":"m2"}"#, "m2"), (#"{"message_id":""}"#, nil), ("[]", nil),
            // Not JSON the server reads as a whole, but its message_id is found: the camera is told.
            (#"{"message_id":"m3","metadata":\#(deep)}"#, "m3"),
            (#"{"camera_id":"CAM1","message_id":"m4","detection_data":{"plates":["#, "m4"),
        ]
        for (payload, expected) in cases {
            guard
                case .rejected(let rejection) = DetectionIntake.evaluate(
                    cameraID: "CAM1",
                    payload: Array(payload.utf8),
                    receivedAt: now,
                    matcher: matcher
                )
            else {
                Issue.record("accepted \(payload)")
                continue
            }
            #expect(rejection.messageID == expected)
            #expect(rejection.cameraID == "CAM1")
            #expect(!rejection.errors.isEmpty)
        }
    }

    /// A valid detection with `padding` bytes of thumbnail in its metadata.
    private func detection(id: String = "big", padding: Int) -> [UInt8] {
        let head = #"{"message_id":"\#(id)","timestamp":"2024-01-15T10:30:00Z","camera_id":"CAM1","checkpoint_id":"CP1","#
        let tail = #""detection_data":{"plates":[{"plate_number":"ABC1234"}]},"metadata":{"thumbnail":"\#(String(repeating: "A", count: padding))"}}"#
        return Array((head + tail).utf8)
    }

    @Test("a detection over 1 MiB is refused, naming its size; one just under is taken")
    func oversize() {
        let small = detection(padding: DetectionIntake.maximumPayloadBytes - 400)
        #expect(small.count <= DetectionIntake.maximumPayloadBytes)
        guard case .accepted = DetectionIntake.evaluate(cameraID: "CAM1", payload: small, receivedAt: now, matcher: matcher) else {
            Issue.record("refused a detection of \(small.count) bytes")
            return
        }
        let large = detection(padding: DetectionIntake.maximumPayloadBytes)
        guard case .rejected(let rejection) = DetectionIntake.evaluate(cameraID: "CAM1", payload: large, receivedAt: now, matcher: matcher)
        else {
            Issue.record("accepted a detection of \(large.count) bytes")
            return
        }
        #expect(rejection.errors.first?.reason.contains("\(large.count) bytes") == true)
    }

    @Test("a detection over 1 MiB is refused with its message_id, so that its camera is told and stops re-sending it")
    func oversizeNamesMessageID() {
        let payload = detection(id: "big-1", padding: DetectionIntake.maximumPayloadBytes)
        guard case .rejected(let rejection) = DetectionIntake.evaluate(cameraID: "CAM1", payload: payload, receivedAt: now, matcher: matcher) else {
            Issue.record("accepted a detection of \(payload.count) bytes")
            return
        }
        // Without a message_id the server sends no ack: `databus camera` keeps the detection and
        // re-sends its megabyte forever (ack timeout doubling to 5 minutes).
        #expect(rejection.messageID == "big-1")
    }
}

@Suite("Batch queue")
struct BatchQueueTests {
    @Test("takes everything waiting up to the maximum, waits when empty, ends once finished and drained")
    func batches() async {
        let queue = BatchQueue<Int>()
        for value in 0..<5 { queue.append(value) }
        #expect(await queue.next(maximum: 3) == [0, 1, 2])
        #expect(await queue.next(maximum: 3) == [3, 4])
        let waiter = Task { await queue.next(maximum: 10) }
        try? await Task.sleep(for: .milliseconds(50))
        queue.append(9)
        #expect(await waiter.value == [9])
        queue.append(10)
        queue.finish()
        #expect(await queue.next(maximum: 10) == [10])
        #expect(await queue.next(maximum: 10) == nil)
    }
}

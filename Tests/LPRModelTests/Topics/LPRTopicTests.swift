import LPRModel
import Testing

@Suite("LPR topics")
struct LPRTopicTests {
    static let all: [LPRTopic] = [
        .detection(camera: "CAM001"), .detectionAck(camera: "CAM001"), .health(camera: "CAM001"), .healthRequest(camera: "CAM001"),
        .configUpdate(camera: "CAM001"), .config(camera: "CAM001"), .configRequest(camera: "CAM001"), .control(camera: "CAM001"),
        .controlResponse(camera: "CAM001"), .status(camera: "CAM001"), .checkpointStatus(checkpoint: "CP001"),
        .checkpointAnalytics(checkpoint: "CP001"), .systemHealth, .systemStatus, .systemControl, .systemControlResponse, .systemAlerts,
        .systemLogs, .systemMonitoring, .blacklistUpdates, .blacklistNotifications, .blacklistRequest,
    ]

    @Test("every topic's name parses back to it")
    func roundTrip() {
        for topic in Self.all {
            #expect(LPRTopic(parsing: topic.name) == topic, "\(topic.name)")
        }
    }

    @Test("names, QoS and retain as the protocol table gives them")
    func contract() {
        #expect(LPRTopic.detection(camera: "7").name == "lprserver/cameras/7/detection")
        #expect(LPRTopic.detectionAck(camera: "7").name == "lprserver/cameras/7/detection/ack")
        #expect(LPRTopic.configUpdate(camera: "7").name == "lprserver/cameras/7/config/update")
        #expect(LPRTopic.checkpointAnalytics(checkpoint: "CP1").name == "lprserver/checkpoints/CP1/analytics")
        #expect(LPRTopic.blacklistNotifications.name == "lprserver/blacklist/notifications")
        let qosAndRetain = Dictionary(uniqueKeysWithValues: Self.all.map { ($0.name, "\($0.qos)\($0.retain ? "r" : "")") })
        #expect(qosAndRetain["lprserver/cameras/CAM001/detection"] == "1")
        #expect(qosAndRetain["lprserver/cameras/CAM001/health"] == "0r")
        #expect(qosAndRetain["lprserver/cameras/CAM001/config/update"] == "2r")
        #expect(qosAndRetain["lprserver/cameras/CAM001/config"] == "2r")
        #expect(qosAndRetain["lprserver/cameras/CAM001/control"] == "2")
        #expect(qosAndRetain["lprserver/cameras/CAM001/status"] == "1r")
        #expect(qosAndRetain["lprserver/system/health"] == "0r")
        #expect(qosAndRetain["lprserver/system/alerts"] == "1")
        #expect(qosAndRetain["lprserver/blacklist/updates"] == "1r")
    }

    @Test(
        "topics outside the protocol are not mistaken for it",
        arguments: [
            "lprserver", "lprserver/cameras", "lprserver/cameras//detection", "lprserver/cameras/7/unknown", "other/cameras/7/detection",
            "lprserver/system/unknown", "lprserver/checkpoints/CP1/status/x", "lprserver/blacklist/updates/x",
        ]
    )
    func foreign(name: String) {
        #expect(LPRTopic(parsing: name) == nil)
    }

    @Test("a camera id stands in one topic level: no separator, wildcard or control character")
    func identifiers() {
        for good in ["CAM001", "cam-7_a.b", "กล้อง1", "Kamera Süd"] { #expect(LPRTopic.isValidIdentifier(good), "\(good)") }
        for bad in ["", "a/b", "a+b", "a#", "a\u{0}b", "\u{18}\u{16}\u{8}!E", "tab\there", "del\u{7F}", "c1\u{85}"] {
            #expect(!LPRTopic.isValidIdentifier(bad), "\(bad.debugDescription)")
        }
    }
}

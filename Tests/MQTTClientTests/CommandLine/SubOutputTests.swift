import DatabusTestSupport
import Foundation
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// `databus sub` and `mosquitto_sub`, run side by side with the same flags against a real
/// mosquitto, print the same bytes for the same traffic.
@Suite("databus sub prints what mosquitto_sub prints", .serialized, .timeLimit(.minutes(3)))
struct SubOutputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        /// The flags both get, besides host, port, client identifier and `-t '#'`.
        let arguments: [String]
        /// How many messages they print, passed as `-C`; `nil` for flags that end the run themselves.
        let printed: Int?
        /// `%j`/`%J` print the time of arrival, which differs: compare without it.
        var withoutTimestamps = false

        var testDescription: String { (arguments + (printed.map { ["-C", "\($0)"] } ?? [])).joined(separator: " ") }
    }

    /// Every message of ``publishTraffic(_:)`` plus the retained one: what `-t '#'` receives.
    static let received = 9

    static let cases: [Case] = [
        Case(arguments: ["-v"], printed: received),
        Case(arguments: [], printed: received),
        Case(arguments: ["-v", "-N"], printed: received),
        Case(arguments: ["-v"], printed: 3),
        Case(arguments: ["-v", "-R"], printed: received - 1),
        Case(arguments: ["-v", "-T", "lprserver/cameras/2/#", "-T", "text/lines"], printed: received - 3),
        Case(arguments: ["-v", "--retained-only"], printed: nil),
        Case(arguments: ["-q", "2", "-F", "%t|%q|%m|%r|%l"], printed: received),
        Case(arguments: ["-F", #"%t %p|%x|%X|%10.6t|%-12t|%5p|%-5p|%08x|%5X|%05l|%-4l|%%|@@|\t|\e|\\"#], printed: received),
        Case(
            arguments: [
                "-V", "5", "-q", "1", "-D", "subscribe", "subscription-identifier", "5",
                "-F", "%t %C|%F|%P|%R|%D|%S|%A|%4F|%-3S|%6R|%3.2C|%02F",
            ],
            printed: received
        ),
        Case(arguments: ["-V", "mqttv5", "-v"], printed: received),
        Case(arguments: ["-V", "5", "-q", "2", "-F", "%j"], printed: received, withoutTimestamps: true),
        Case(arguments: ["-V", "5", "-F", "%J"], printed: received, withoutTimestamps: true),
    ]

    @Test("the same flags print the same bytes", arguments: cases)
    func sameOutput(_ testCase: Case) async throws {
        try await Mosquitto.with(extraConfiguration: Mosquitto.logSubscriptions) { broker in
            try await CommandRunner.with { runner in
                try await withClient(.test(broker, id: "camera-1")) { camera in
                    try await camera.publish(topic: "lprserver/cameras/1/status", payload: "online", qos: .atLeastOnce, retain: true)
                }
                let flags =
                    ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "#"] + testCase.arguments
                    + (testCase.printed.map { ["-C", "\($0)"] } ?? [])
                let reference = try runner.start("mosquitto_sub", flags + ["-i", "reference-sub"])
                let ours = try runner.databus(["sub"] + flags + ["-i", "databus-sub"])
                try await broker.waitForSubscriptions(["reference-sub", "databus-sub"])
                try await Self.publishTraffic(broker)

                let expected = await reference.finish(timeout: .seconds(10))
                let actual = await ours.finish(timeout: .seconds(10))
                #expect(expected.status == 0, "mosquitto_sub: \(expected.error)")
                #expect(actual.status == expected.status, "databus sub: \(actual.error)")
                var expectedOutput = expected.output
                var actualOutput = actual.output
                if testCase.withoutTimestamps {
                    expectedOutput = Self.removingTimestamps(expectedOutput)
                    actualOutput = Self.removingTimestamps(actualOutput)
                }
                #expect(!expectedOutput.isEmpty)
                if actualOutput != expectedOutput {
                    Issue.record(
                        """
                        databus sub printed something else than mosquitto_sub.
                        mosquitto_sub: \(Self.visible(expectedOutput))
                        databus sub:   \(Self.visible(actualOutput))
                        """
                    )
                }
            }
        }
    }

    @Test("time fields (@ strftime, @N, %I, %U, the tst of %j) have mosquitto_sub's shape and the time of arrival")
    func timeFields() async throws {
        try await Mosquitto.with(extraConfiguration: Mosquitto.logSubscriptions) { broker in
            try await CommandRunner.with { runner in
                let flags = ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "clock", "-C", "1", "-V", "5", "-F", "@Y-@m-@d @H:@M:@S.@N|%I|%U|%j"]
                let reference = try runner.start("mosquitto_sub", flags + ["-i", "reference-sub"])
                let ours = try runner.databus(["sub"] + flags + ["-i", "databus-sub"])
                try await broker.waitForSubscriptions(["reference-sub", "databus-sub"])
                try await withClient(.test(broker, id: "clock")) { client in
                    try await client.publish(topic: "clock", payload: "tick", qos: .atLeastOnce)
                }
                let expected = await reference.finish(timeout: .seconds(10))
                let actual = await ours.finish(timeout: .seconds(10))
                #expect(actual.status == 0 && expected.status == 0)
                // The same shape: equal once every digit is a 0.
                let shape = { (text: String) in String(text.map { $0.isNumber ? "0" : $0 }) }
                #expect(shape(actual.outputText) == shape(expected.outputText), "\(actual.outputText) vs \(expected.outputText)")
                // The time is the time of arrival.
                let fields = actual.outputText.split(separator: "|")
                let unixTime = fields.count > 2 ? Double(fields[2]) ?? 0 : 0
                #expect(abs(unixTime - Date().timeIntervalSince1970) < 60)
                let formatter = DateFormatter()
                formatter.dateFormat = "yyyy-MM-dd"
                #expect(actual.outputText.hasPrefix(formatter.string(from: Date(timeIntervalSince1970: unixTime))))
            }
        }
    }

    /// Text, an empty payload, UTF-8, line breaks, raw bytes, MQTT 5 properties, every QoS and a
    /// fresh retained message, published one after another, each flow complete before the next.
    static func publishTraffic(_ broker: Mosquitto) async throws {
        let detectionProperties: Properties = [
            .contentType("application/json"), .userProperty("site", "gate-3"), .userProperty("lane", "2"),
            .payloadFormatIndicator(1), .responseTopic("lprserver/cameras/1/ack"), .correlationData(ByteBuffer(string: "c-17")),
        ]
        try await withClient(.test(broker, id: "traffic")) { camera in
            try await camera.publish(
                topic: "lprserver/cameras/1/detection",
                payload: #"{ "plate": "AB123CD", "confidence": 0.97, "tags": ["watch", null] }"#,
                qos: .atLeastOnce,
                properties: detectionProperties
            )
            try await camera.publish(topic: "lprserver/cameras/2/detection", payload: "plate with spaces\tand a tab", qos: .exactlyOnce)
            try await camera.publish(topic: "lprserver/cameras/2/health", payload: ByteBuffer(), qos: .atMostOnce)
            try await camera.publish(topic: "unicode/grüße", payload: "Grüße – 日本語 ✓ \"quoted\" back\\slash", qos: .atLeastOnce)
            try await camera.publish(topic: "text/lines", payload: "line one\nline two\r\n", qos: .atLeastOnce)
            try await camera.publish(
                topic: "binary/frame",
                payload: ByteBuffer(bytes: [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0x0A, 0x1B, 0x41]),
                qos: .atLeastOnce
            )
            try await camera.publish(topic: "lprserver/cameras/3/status", payload: "fresh retained", qos: .atLeastOnce, retain: true)
            try await camera.publish(topic: "zz/end", payload: "42", qos: .atLeastOnce)
        }
    }

    /// Removes every `"tst":"..."` member.
    static func removingTimestamps(_ bytes: [UInt8]) -> [UInt8] {
        let marker = Array(#""tst":""#.utf8)
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if bytes[index...].starts(with: marker) {
                index += marker.count
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") { index += 1 }
                index += 1
                continue
            }
            out.append(bytes[index])
            index += 1
        }
        return out
    }

    /// Bytes as readable text: printable ASCII as it is, everything else as `\xNN`.
    static func visible(_ bytes: [UInt8]) -> String {
        bytes.map { (0x20..<0x7F).contains($0) ? String(UnicodeScalar($0)) : String(format: "\\x%02X", $0) }.joined()
    }
}

import Foundation
import LPRModel
import Testing

@Suite("RFC 3339 timestamps")
struct RFC3339Tests {
    @Test("the forms devices send parse to the right instant")
    func parses() throws {
        let reference = try #require(ISO8601DateFormatter().date(from: "2024-01-15T10:30:00Z"))
        #expect(RFC3339.date(from: "2024-01-15T10:30:00Z") == reference)
        #expect(RFC3339.date(from: "2024-01-15t10:30:00z") == reference)
        #expect(RFC3339.date(from: "2024-01-15T12:30:00+02:00") == reference)
        #expect(RFC3339.date(from: "2024-01-15T05:00:00-05:30") == reference)
        let fractional = try #require(RFC3339.date(from: "2024-08-03T15:05:30.123456Z"))
        #expect(abs(fractional.timeIntervalSince1970 - 1_722_697_530.123456) < 0.000_001)
        #expect(RFC3339.date(from: "2024-02-29T00:00:00Z") != nil)
    }

    @Test(
        "malformed timestamps are refused",
        arguments: [
            "2024-01-15", "2024-01-15T10:30:00", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-15T24:00:00Z", "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00+0200", "x024-01-15T10:30:00Z", "2024-01-15T10:30:00Zjunk",
        ]
    )
    func refused(text: String) {
        #expect(RFC3339.date(from: text) == nil)
    }

    @Test("written as UTC with milliseconds, and read back to the same millisecond, over many dates")
    func roundTrip() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let milliseconds = Int64.random(in: -2_000_000_000_000...4_000_000_000_000, using: &generator)
            let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
            let text = RFC3339.string(from: date)
            #expect(text.count == 24 && text.hasSuffix("Z"))
            let back = RFC3339.date(from: text)
            #expect(back.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } == milliseconds, "\(text)")
        }
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 1_705_314_600)) == "2024-01-15T10:30:00.000Z")
    }
}

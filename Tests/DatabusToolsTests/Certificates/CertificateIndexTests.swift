import DatabusTools
import Foundation
import Testing

/// `DIR/ca/index.txt` in OpenSSL's `openssl ca` format.
@Suite("Certificate index")
struct CertificateIndexTests {
    static let text = """
        V\t280301120000Z\t\t5F3A\tunknown\t/CN=camera-12
        R\t280301120000Z\t261206093000Z,keyCompromise\t71B2\tunknown\t/CN=camera-7
        R\t20510101000000Z\t261206093000Z\t0A\tunknown\t/O=Databus/CN=gpio

        """

    @Test("OpenSSL's lines are read back: status, two- and four-digit years, revocation date and reason, serial, CN")
    func parsesOpenSSLLines() throws {
        let index = try CertificateIndex(parsing: Self.text, file: "index.txt")
        #expect(index.entries.map(\.commonName) == ["camera-12", "camera-7", "gpio"])
        #expect(index.entries[0].revocation == nil)
        #expect(index.entries[1].revocation?.reason == .keyCompromise)
        #expect(index.entries[2].revocation?.reason == .unspecified)
        let components = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: index.entries[2].notValidAfter)
        #expect(components.year == 2051)
        #expect(index.revoked.map(\.serialNumber) == ["71B2", "0A"])
        #expect(index.entry(serialNumber: "5f:3a")?.commonName == "camera-12")
        #expect(index.entry(serialNumber: "000A")?.commonName == "gpio")
        // Written back as read (the first line is still valid before 2028).
        let now = try #require(ISO8601DateFormatter().date(from: "2027-01-01T00:00:00Z"))
        #expect(index.text(now: now) == Self.text)
    }

    @Test("revoking keeps the first date and reason; an expired entry is written with status E")
    func revokesOnce() throws {
        var index = try CertificateIndex(parsing: Self.text, file: "index.txt")
        let now = try #require(ISO8601DateFormatter().date(from: "2029-01-01T00:00:00Z"))
        let first = index.revoke(serialNumber: "5F3A", at: now, reason: .superseded)
        let again = index.revoke(serialNumber: "71B2", at: now, reason: .superseded)
        #expect(first)
        #expect(!again)
        #expect(index.entry(serialNumber: "71B2")?.revocation?.reason == .keyCompromise)
        #expect(index.text(now: now).hasPrefix("R\t280301120000Z\t290101000000Z,superseded\t5F3A\t"))
        var fresh = CertificateIndex()
        fresh.add(.init(serialNumber: "01", subject: "/CN=x", notValidAfter: now.addingTimeInterval(-1), revocation: nil))
        #expect(fresh.text(now: now) == "E\t281231235959Z\t\t01\tunknown\t/CN=x\n")
    }

    @Test(
        "a broken line is an error naming the file and line",
        arguments: [
            ("V\t280301120000Z\t\t5F3A\tunknown", "expected 6 tab-separated fields"),
            ("X\t280301120000Z\t\t5F3A\tunknown\t/CN=a", "status \"X\""),
            ("V\t28030112000Z\t\t5F3A\tunknown\t/CN=a", "is not a date"),
            ("V\t280301120000Z\t\t5G3A\tunknown\t/CN=a", "is not a serial number"),
            ("R\t280301120000Z\t\t5F3A\tunknown\t/CN=a", "needs its revocation date"),
            ("R\t280301120000Z\t261206093000Z,stolen\t5F3A\tunknown\t/CN=a", "unknown revocation reason \"stolen\""),
        ]
    )
    func brokenLines(line: String, message: String) {
        #expect {
            _ = try CertificateIndex(parsing: "V\t280301120000Z\t\t01\tunknown\t/CN=ok\n" + line + "\n", file: "idx")
        } throws: { error in
            "\(error)".contains("idx:2: ") && "\(error)".contains(message)
        }
    }
}

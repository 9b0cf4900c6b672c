import Foundation

/// Every certificate a CA folder issued, and which of them are revoked: `DIR/ca/index.txt`,
/// in the format of OpenSSL's `openssl ca` database, so the same folder also works with
/// `openssl ca -gencrl` or `openssl ca -revoke`.
///
/// One line per certificate, six fields separated by tabs:
/// ```
/// V	280301120000Z		5F3A...	unknown	/CN=camera-12
/// R	280301120000Z	261206093000Z,keyCompromise	71B2...	unknown	/CN=camera-7
/// ```
/// status (`V` valid, `R` revoked, `E` expired), expiry, revocation date and reason (empty
/// unless revoked), serial number in hex, file name (`unknown`), subject.
public struct CertificateIndex: Sendable, Hashable {
    /// One issued certificate.
    public struct Entry: Sendable, Hashable {
        /// Serial number: hex digits, upper case, an even number of them, as OpenSSL writes it.
        public var serialNumber: String
        /// The subject in OpenSSL's one-line form (`/O=Databus/CN=camera-12`).
        public var subject: String
        public var notValidAfter: Date
        /// When and why it was revoked; `nil` while it is not.
        public var revocation: Revocation?

        public struct Revocation: Sendable, Hashable {
            public var date: Date
            public var reason: RevocationReason
        }

        public init(serialNumber: String, subject: String, notValidAfter: Date, revocation: Revocation?) {
            self.serialNumber = serialNumber
            self.subject = subject
            self.notValidAfter = notValidAfter
            self.revocation = revocation
        }

        /// The common name from ``subject``, or the whole subject when it has none.
        public var commonName: String {
            for part in subject.split(separator: "/") where part.hasPrefix("CN=") {
                return String(part.dropFirst(3))
            }
            return subject
        }
    }

    public private(set) var entries: [Entry]

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    /// Parses the text of an `index.txt`.
    /// - Parameter file: named in errors.
    public init(parsing text: String, file: String) throws(CertificateToolError) {
        var entries: [Entry] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            func failure(_ why: String) -> CertificateToolError {
                CertificateToolError("\(file):\(number + 1): \(why)")
            }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 6 else { throw failure("expected 6 tab-separated fields, found \(fields.count)") }
            guard let expiry = Self.date(fields[1]) else { throw failure("\"\(fields[1])\" is not a date (YYMMDDHHMMSSZ)") }
            let serial = fields[3].uppercased()
            guard !serial.isEmpty, serial.count % 2 == 0, serial.allSatisfy(Self.isASCIIHexDigit) else {
                throw failure("\"\(fields[3])\" is not a serial number in hex")
            }
            var revocation: Entry.Revocation?
            switch fields[0] {
            case "V", "E":
                break
            case "R":
                let parts = fields[2].split(separator: ",", maxSplits: 1).map(String.init)
                guard let first = parts.first, let date = Self.date(first) else {
                    throw failure("a revoked certificate needs its revocation date (YYMMDDHHMMSSZ[,reason])")
                }
                let reason: RevocationReason
                if parts.count == 2 {
                    guard let known = RevocationReason(name: parts[1]) else { throw failure("unknown revocation reason \"\(parts[1])\"") }
                    reason = known
                } else {
                    reason = .unspecified
                }
                revocation = Entry.Revocation(date: date, reason: reason)
            default:
                throw failure("status \"\(fields[0])\" is not V, R or E")
            }
            entries.append(Entry(serialNumber: serial, subject: fields[5], notValidAfter: expiry, revocation: revocation))
        }
        self.entries = entries
    }

    /// The text of the `index.txt`, statuses as of `now` (`E` once a certificate expired).
    public func text(now: Date = Date()) -> String {
        entries.map { entry in
            let status = entry.revocation != nil ? "R" : entry.notValidAfter < now ? "E" : "V"
            let revoked = entry.revocation.map { revocation in
                Self.text(revocation.date) + (revocation.reason == .unspecified ? "" : ",\(revocation.reason.name)")
            }
            return [status, Self.text(entry.notValidAfter), revoked ?? "", entry.serialNumber, "unknown", entry.subject].joined(separator: "\t")
                + "\n"
        }.joined()
    }

    /// The entry with this serial number (hex, any case, with or without `:` and leading zeros).
    public func entry(serialNumber: String) -> Entry? {
        let wanted = Self.normalizedSerial(serialNumber)
        return entries.first { Self.normalizedSerial($0.serialNumber) == wanted }
    }

    /// Adds an issued certificate; one already listed is left as it is.
    public mutating func add(_ entry: Entry) {
        guard self.entry(serialNumber: entry.serialNumber) == nil else { return }
        entries.append(entry)
    }

    /// Marks the certificate with `serialNumber` revoked; one revoked already keeps its first date and reason.
    /// - Returns: whether it was newly revoked.
    @discardableResult
    public mutating func revoke(serialNumber: String, at date: Date, reason: RevocationReason) -> Bool {
        let wanted = Self.normalizedSerial(serialNumber)
        guard let index = entries.firstIndex(where: { Self.normalizedSerial($0.serialNumber) == wanted }),
            entries[index].revocation == nil
        else { return false }
        entries[index].revocation = Entry.Revocation(date: date, reason: reason)
        return true
    }

    /// The certificates revoked so far, for the CRL.
    public var revoked: [Entry] { entries.filter { $0.revocation != nil } }

    // MARK: Formats

    /// Serial bytes as OpenSSL writes them in the index: upper-case hex, leading zero bytes dropped.
    static func serialText(_ bytes: some Collection<UInt8>) -> String {
        let significant = Array(bytes.drop(while: { $0 == 0 }))
        return (significant.isEmpty ? [0] : significant).map { String(format: "%02X", $0) }.joined()
    }

    /// Hex digits only, upper case, without leading zeros (so `0A:1B` and `a1b` compare equal).
    static func normalizedSerial(_ text: String) -> String {
        let digits = text.uppercased().filter { $0 != ":" }
        let trimmed = digits.drop(while: { $0 == "0" })
        return trimmed.isEmpty ? "0" : String(trimmed)
    }

    /// Whether `text` can name a serial number (hex digits, optionally grouped with `:`).
    static func isSerialNumber(_ text: String) -> Bool {
        let digits = text.filter { $0 != ":" }
        return !digits.isEmpty && digits.allSatisfy(isASCIIHexDigit)
    }

    static func isASCIIHexDigit(_ character: Character) -> Bool {
        character.isASCII && character.isHexDigit
    }

    /// `YYMMDDHHMMSSZ` before 2050, `YYYYMMDDHHMMSSZ` from 2050 on (as OpenSSL writes ASN.1 times).
    static func text(_ date: Date) -> String {
        let parts = Calendar.utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let year = parts.year ?? 1970
        let prefix = year < 2050 && year >= 1950 ? String(format: "%02d", year % 100) : String(format: "%04d", year)
        return prefix
            + String(format: "%02d%02d%02d%02d%02dZ", parts.month ?? 1, parts.day ?? 1, parts.hour ?? 0, parts.minute ?? 0, parts.second ?? 0)
    }

    static func date(_ text: String) -> Date? {
        guard text.hasSuffix("Z"), text.dropLast().allSatisfy({ ("0"..."9").contains($0) }) else { return nil }
        let digits = Array(text.dropLast()).map { Int(String($0))! }
        func number(_ range: Range<Int>) -> Int { range.reduce(0) { $0 * 10 + digits[$1] } }
        var components = DateComponents()
        let rest: Int
        switch digits.count {
        case 12:
            let year = number(0..<2)
            components.year = year < 50 ? 2000 + year : 1900 + year
            rest = 2
        case 14:
            components.year = number(0..<4)
            rest = 4
        default:
            return nil
        }
        components.month = number(rest..<rest + 2)
        components.day = number(rest + 2..<rest + 4)
        components.hour = number(rest + 4..<rest + 6)
        components.minute = number(rest + 6..<rest + 8)
        components.second = number(rest + 8..<rest + 10)
        guard let month = components.month, (1...12).contains(month), let day = components.day, (1...31).contains(day) else { return nil }
        return Calendar.utc.date(from: components)
    }
}

/// Why a certificate was revoked: RFC 5280's `CRLReason`, with OpenSSL's names.
public enum RevocationReason: Int, Sendable, Hashable, CaseIterable {
    case unspecified = 0
    case keyCompromise = 1
    case caCompromise = 2
    case affiliationChanged = 3
    case superseded = 4
    case cessationOfOperation = 5

    /// The name OpenSSL uses in its index and `openssl crl -text` (`keyCompromise`, `CACompromise`, ...).
    public var name: String {
        switch self {
        case .unspecified: "unspecified"
        case .keyCompromise: "keyCompromise"
        case .caCompromise: "CACompromise"
        case .affiliationChanged: "affiliationChanged"
        case .superseded: "superseded"
        case .cessationOfOperation: "cessationOfOperation"
        }
    }

    /// A reason by its name, in any case.
    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else { return nil }
        self = found
    }
}

extension Calendar {
    /// The Gregorian calendar in UTC, as certificates count time.
    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()
}

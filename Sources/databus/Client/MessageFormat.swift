import ArgumentParser
import Foundation
import MQTTClient
import MQTTCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A `databus sub -F` output format, as mosquitto_sub reads it: `%` message fields with
/// optional flags (`-`, `0`), width and maximum width; `@` strftime sequences (`@N`
/// nanoseconds, `@@` an `@`); `\` escapes (`\n`, `\t`, `\0`, `\e`, ...).
struct MessageFormat {
    /// One `%` field: `%[-0][width][.precision]specifier`.
    struct Field {
        var specifier: UInt8
        var leftAligned = false
        var zeroPadded = false
        var width = 0
        var precision: Int?
    }

    enum Token {
        case literal([UInt8])
        case field(Field)
        /// `@X`: strftime's `%X`.
        case time(UInt8)
        /// `@N`: nanoseconds in the current second.
        case nanoseconds
    }

    /// The `%` specifiers mosquitto_sub knows.
    static let specifiers = Set("ACDEFIjJlmPpqRrStUxX".utf8)

    let tokens: [Token]

    /// Parses a format; the errors name what is wrong, as a usage error.
    init(_ format: String) throws {
        let bytes = Array(format.utf8)
        var tokens: [Token] = []
        var literal: [UInt8] = []
        func flush() {
            if !literal.isEmpty { tokens.append(.literal(literal)) }
            literal = []
        }
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "%"):
                var field = Field(specifier: 0)
                while index < bytes.count, bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "0") {
                    if bytes[index] == UInt8(ascii: "-") { field.leftAligned = true } else { field.zeroPadded = true }
                    index += 1
                }
                while index < bytes.count, let digit = Self.digit(bytes[index]) {
                    field.width = min(field.width * 10 + digit, 1_000_000)
                    index += 1
                }
                if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                    index += 1
                    var precision = 0
                    while index < bytes.count, let digit = Self.digit(bytes[index]) {
                        precision = min(precision * 10 + digit, 1_000_000)
                        index += 1
                    }
                    field.precision = precision
                }
                guard index < bytes.count else { throw ValidationError("Incomplete format specifier in -F '\(format)'.") }
                let specifier = bytes[index]
                index += 1
                if specifier == UInt8(ascii: "%") {
                    literal.append(specifier)
                    continue
                }
                guard Self.specifiers.contains(specifier) else {
                    throw ValidationError("Invalid format specifier '\(Character(Unicode.Scalar(specifier)))' in -F '\(format)'.")
                }
                field.specifier = specifier
                flush()
                tokens.append(.field(field))
            case UInt8(ascii: "@"):
                guard index < bytes.count else { throw ValidationError("Incomplete format specifier in -F '\(format)'.") }
                let next = bytes[index]
                index += 1
                if next == UInt8(ascii: "@") {
                    literal.append(next)
                } else {
                    flush()
                    tokens.append(next == UInt8(ascii: "N") ? .nanoseconds : .time(next))
                }
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw ValidationError("Incomplete escape specifier in -F '\(format)'.") }
                let next = bytes[index]
                index += 1
                let escaped: UInt8? =
                    switch next {
                    case UInt8(ascii: "\\"): UInt8(ascii: "\\")
                    case UInt8(ascii: "0"): 0
                    case UInt8(ascii: "a"): 0x07
                    case UInt8(ascii: "e"): 0x1B
                    case UInt8(ascii: "n"): 0x0A
                    case UInt8(ascii: "r"): 0x0D
                    case UInt8(ascii: "t"): 0x09
                    case UInt8(ascii: "v"): 0x0B
                    default: nil
                    }
                guard let escaped else {
                    throw ValidationError("Invalid escape specifier '\(Character(Unicode.Scalar(next)))' in -F '\(format)'.")
                }
                literal.append(escaped)
            default:
                literal.append(byte)
            }
        }
        flush()
        self.tokens = tokens
    }

    private static func digit(_ byte: UInt8) -> Int? {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) ? Int(byte - UInt8(ascii: "0")) : nil
    }

    // MARK: Rendering

    /// The bytes for one message received at `time`; problems (a `%J` payload that is not
    /// JSON) go to `warn`.
    func render(_ message: MQTTMessage, at time: timespec, warn: (String) -> Void) -> [UInt8] {
        var out: [UInt8] = []
        for token in tokens {
            switch token {
            case .literal(let bytes):
                out += bytes
            case .nanoseconds:
                out += Array(String(format: "%09ld", Int(time.tv_nsec)).utf8)
            case .time(let conversion):
                out += Self.strftime("%" + String(Character(Unicode.Scalar(conversion))), time)
            case .field(let field):
                render(field, message, time, into: &out, warn: warn)
            }
        }
        return out
    }

    private func render(_ field: Field, _ message: MQTTMessage, _ time: timespec, into out: inout [UInt8], warn: (String) -> Void) {
        let properties = message.properties
        let payload = Array(message.payload.readableBytesView)
        switch field.specifier {
        case UInt8(ascii: "A"): out += Self.number(properties.topicAlias.map(Int.init), field)
        case UInt8(ascii: "C"): out += Self.text(Array((properties.contentType ?? "").utf8), field)
        case UInt8(ascii: "D"): out += properties.correlationData.map { Array($0.readableBytesView) } ?? []
        case UInt8(ascii: "E"): out += Self.number(properties.messageExpiryInterval.map(Int.init), field)
        case UInt8(ascii: "F"): out += Self.number(properties.payloadFormatIndicator.map(Int.init), field)
        case UInt8(ascii: "I"): out += Self.text(Self.strftime("%Y-%m-%dT%H:%M:%S%z", time), field)
        case UInt8(ascii: "j"): out += MessageJSON.render(message, at: time, payloadAsJSON: false, warn: warn)
        case UInt8(ascii: "J"): out += MessageJSON.render(message, at: time, payloadAsJSON: true, warn: warn)
        case UInt8(ascii: "l"): out += Self.number(payload.count, field)
        case UInt8(ascii: "m"): out += Self.number(Int(message.packetIdentifier ?? 0), field)
        case UInt8(ascii: "P"):
            out += Array(properties.userProperties.map { "\($0.name):\($0.value)" }.joined(separator: " ").utf8)
        case UInt8(ascii: "p"): out += Self.payload(payload, hex: nil, field)
        case UInt8(ascii: "q"): out += Array("\(message.qos.rawValue)".utf8)
        case UInt8(ascii: "R"):
            // As mosquitto_sub: nothing at all, not even padding, without a response topic.
            if let topic = properties.responseTopic { out += Self.text(Array(topic.utf8), field) }
        case UInt8(ascii: "r"): out += Array((message.retain ? "1" : "0").utf8)
        case UInt8(ascii: "S"): out += Self.number(properties.subscriptionIdentifiers.first, field)
        case UInt8(ascii: "t"): out += Self.text(Array(message.topic.utf8), field)
        case UInt8(ascii: "U"): out += Array(String(format: "%ld.%09ld", Int(time.tv_sec), Int(time.tv_nsec)).utf8)
        case UInt8(ascii: "x"): out += Self.payload(payload, hex: "%02x", field)
        case UInt8(ascii: "X"): out += Self.payload(payload, hex: "%02X", field)
        default: break
        }
    }

    /// A text field: cut to the maximum width, padded with spaces to the width.
    static func text(_ bytes: [UInt8], _ field: Field) -> [UInt8] {
        var value = bytes
        if let precision = field.precision, value.count > precision { value = Array(value.prefix(precision)) }
        return pad(value, field, with: UInt8(ascii: " "))
    }

    /// A number field; an absent value is an empty field, padded all the same.
    static func number(_ value: Int?, _ field: Field) -> [UInt8] {
        let padding = field.zeroPadded && !field.leftAligned ? UInt8(ascii: "0") : UInt8(ascii: " ")
        return pad(Array((value.map { "\($0)" } ?? "").utf8), field, with: padding)
    }

    private static func pad(_ value: [UInt8], _ field: Field, with padding: UInt8) -> [UInt8] {
        let missing = max(0, field.width - value.count)
        if field.leftAligned { return value + [UInt8](repeating: UInt8(ascii: " "), count: missing) }
        return [UInt8](repeating: padding, count: missing) + value
    }

    /// The payload, raw or as hex. With a width, mosquitto_sub cuts the payload to the width
    /// (for hex, to half the width, rounded down) and pads it to the width.
    static func payload(_ payload: [UInt8], hex: String?, _ field: Field) -> [UInt8] {
        var length = payload.count
        var padding = 0
        if field.width > 0 {
            length = min(length, field.width)
            if hex != nil {
                length /= 2
                padding = field.width - length * 2
            } else {
                padding = field.width - length
            }
        }
        var body: [UInt8] = []
        if let hex {
            for byte in payload.prefix(length) { body += Array(String(format: hex, byte).utf8) }
        } else {
            body = Array(payload.prefix(length))
        }
        let padByte = hex != nil && field.zeroPadded ? UInt8(ascii: "0") : UInt8(ascii: " ")
        if field.leftAligned { return body + [UInt8](repeating: UInt8(ascii: " "), count: padding) }
        return [UInt8](repeating: padByte, count: padding) + body
    }

    /// `strftime` in local time.
    static func strftime(_ format: String, _ time: timespec) -> [UInt8] {
        var seconds = time.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 256)
        let count = Foundation.strftime(&buffer, buffer.count, format, &parts)
        return buffer.prefix(count).map { UInt8(bitPattern: $0) }
    }
}

/// `%j` and `%J`: a message as one JSON object, as mosquitto_sub writes it.
enum MessageJSON {
    static func render(_ message: MQTTMessage, at time: timespec, payloadAsJSON: Bool, warn: (String) -> Void) -> [UInt8] {
        let payload = Array(message.payload.readableBytesView)
        var out = Array(#"{"tst":""#.utf8)
        out += MessageFormat.strftime("%Y-%m-%dT%H:%M:%S", time)
        out += Array(String(format: ".%06ldZ", Int(time.tv_nsec) / 1_000).utf8)
        out += MessageFormat.strftime("%z", time)
        out += Array(#"","topic":"#.utf8)
        out += quoted(Array(message.topic.utf8))
        out += Array(",\"qos\":\(message.qos.rawValue),\"retain\":\(message.retain ? 1 : 0),\"payloadlen\":\(payload.count)".utf8)
        if message.qos != .atMostOnce { out += Array(",\"mid\":\(message.packetIdentifier ?? 0)".utf8) }
        let properties = self.properties(message.properties)
        if !properties.isEmpty { out += Array(#","properties":{"#.utf8) + properties + [UInt8(ascii: "}")] }
        out += Array(#","payload":"#.utf8)
        if payload.isEmpty {
            out += Array("null".utf8)
        } else if payloadAsJSON {
            if let minified = JSONMinifier.minify(payload) {
                out += minified
            } else {
                warn("Error: Message payload is not valid JSON on topic \(message.topic).")
                return []
            }
        } else {
            out += quoted(cString(payload))
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The properties the client received, in order; user properties together where the first is.
    private static func properties(_ properties: Properties) -> [UInt8] {
        var members: [[UInt8]] = []
        var userPropertiesWritten = false
        for property in properties {
            switch property {
            case .payloadFormatIndicator(let value): members.append(Array("\"payload-format-indicator\":\(value)".utf8))
            case .messageExpiryInterval(let value): members.append(Array("\"message-expiry-interval\":\(value)".utf8))
            case .subscriptionIdentifier(let value): members.append(Array("\"subscription-identifier\":\(value)".utf8))
            case .topicAlias(let value): members.append(Array("\"topic-alias\":\(value)".utf8))
            case .contentType(let value): members.append(Array("\"content-type\":".utf8) + quoted(Array(value.utf8)))
            case .responseTopic(let value): members.append(Array("\"response-topic\":".utf8) + quoted(Array(value.utf8)))
            case .correlationData(let value):
                members.append(Array("\"correlation-data\":".utf8) + quoted(cString(Array(value.readableBytesView))))
            case .userProperty:
                guard !userPropertiesWritten else { continue }
                userPropertiesWritten = true
                let pairs = properties.userProperties.map { quoted(Array($0.name.utf8)) + [UInt8(ascii: ":")] + quoted(Array($0.value.utf8)) }
                members.append(Array("\"user-properties\":{".utf8) + Array(pairs.joined(separator: [UInt8(ascii: ",")])) + [UInt8(ascii: "}")])
            default:
                continue
            }
        }
        return Array(members.joined(separator: [UInt8(ascii: ",")]))
    }

    /// Binary data up to its first NUL byte: mosquitto_sub hands payloads to its JSON writer as C strings.
    private static func cString(_ bytes: [UInt8]) -> [UInt8] {
        bytes.firstIndex(of: 0).map { Array(bytes[..<$0]) } ?? bytes
    }

    /// A JSON string of raw bytes: quotes, backslashes and control characters escaped, every
    /// other byte (invalid UTF-8 too) as it is.
    static func quoted(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): out += Array(#"\""#.utf8)
            case UInt8(ascii: "\\"): out += Array(#"\\"#.utf8)
            case 0x08: out += Array(#"\b"#.utf8)
            case 0x0C: out += Array(#"\f"#.utf8)
            case 0x0A: out += Array(#"\n"#.utf8)
            case 0x0D: out += Array(#"\r"#.utf8)
            case 0x09: out += Array(#"\t"#.utf8)
            case 0..<0x20: out += Array(String(format: "\\u%04x", byte).utf8)
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }
}

/// Checks that bytes are one JSON value and writes it again without insignificant whitespace,
/// the way mosquitto_sub's `%J` does: strings with their escapes resolved and written again,
/// numbers with 15 significant digits (17 when 15 do not give the same number back).
enum JSONMinifier {
    static func minify(_ bytes: [UInt8]) -> [UInt8]? {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        guard parser.value(depth: 0) else { return nil }
        parser.skipWhitespace()
        return parser.index == bytes.count ? parser.out : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0
        var out: [UInt8] = []

        init(bytes: [UInt8]) { self.bytes = bytes }

        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let byte = current, [0x20, 0x09, 0x0A, 0x0D].contains(byte) { index += 1 }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard current == byte else { return false }
            out.append(byte)
            index += 1
            return true
        }

        mutating func value(depth: Int) -> Bool {
            guard depth < 1_000, let byte = current else { return false }
            switch byte {
            case UInt8(ascii: "{"): return object(depth: depth)
            case UInt8(ascii: "["): return array(depth: depth)
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return number()
            }
        }

        mutating func literal(_ word: String) -> Bool {
            for byte in word.utf8 where !take(byte) { return false }
            return true
        }

        mutating func object(depth: Int) -> Bool {
            _ = take(UInt8(ascii: "{"))
            skipWhitespace()
            if take(UInt8(ascii: "}")) { return true }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\""), string() else { return false }
                skipWhitespace()
                guard take(UInt8(ascii: ":")) else { return false }
                skipWhitespace()
                guard value(depth: depth + 1) else { return false }
                skipWhitespace()
                if take(UInt8(ascii: "}")) { return true }
                guard take(UInt8(ascii: ",")) else { return false }
            }
        }

        mutating func array(depth: Int) -> Bool {
            _ = take(UInt8(ascii: "["))
            skipWhitespace()
            if take(UInt8(ascii: "]")) { return true }
            while true {
                skipWhitespace()
                guard value(depth: depth + 1) else { return false }
                skipWhitespace()
                if take(UInt8(ascii: "]")) { return true }
                guard take(UInt8(ascii: ",")) else { return false }
            }
        }

        /// Reads a string, resolving its escapes, and writes it quoted again.
        mutating func string() -> Bool {
            index += 1
            var decoded: [UInt8] = []
            while let byte = current {
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    out += MessageJSON.quoted(decoded)
                    return true
                case UInt8(ascii: "\\"):
                    guard let escaped = current else { return false }
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(escaped)
                    case UInt8(ascii: "b"): decoded.append(0x08)
                    case UInt8(ascii: "f"): decoded.append(0x0C)
                    case UInt8(ascii: "n"): decoded.append(0x0A)
                    case UInt8(ascii: "r"): decoded.append(0x0D)
                    case UInt8(ascii: "t"): decoded.append(0x09)
                    case UInt8(ascii: "u"):
                        guard var scalar = hex4() else { return false }
                        if (0xD800..<0xDC00).contains(scalar) {
                            // A high surrogate must be followed by an escaped low one.
                            guard current == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else { return false }
                            index += 2
                            guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return false }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { return false }
                        decoded += Array(String(Character(unicode)).utf8)
                    default:
                        return false
                    }
                default:
                    guard byte >= 0x20 else { return false }
                    decoded.append(byte)
                }
            }
            return false
        }

        private mutating func hex4() -> UInt32? {
            guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else {
                return nil
            }
            index += 4
            return value
        }

        private func isDigit(_ byte: UInt8?) -> Bool { byte.map { (0x30...0x39).contains($0) } ?? false }

        private mutating func skipDigits() -> Bool {
            guard isDigit(current) else { return false }
            while isDigit(current) { index += 1 }
            return true
        }

        mutating func number() -> Bool {
            let start = index
            if current == UInt8(ascii: "-") { index += 1 }
            if current == UInt8(ascii: "0") {
                index += 1
            } else {
                guard skipDigits() else { return false }
            }
            if current == UInt8(ascii: ".") {
                index += 1
                guard skipDigits() else { return false }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                guard skipDigits() else { return false }
            }
            guard let number = Double(String(decoding: bytes[start..<index], as: UTF8.self)) else { return false }
            out += Array(Self.format(number).utf8)
            return true
        }

        static func format(_ number: Double) -> String {
            guard number.isFinite else { return "null" }
            let short = String(format: "%1.15g", number)
            return Double(short) == number ? short : String(format: "%1.17g", number)
        }
    }
}

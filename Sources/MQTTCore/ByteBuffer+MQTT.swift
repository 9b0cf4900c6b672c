import NIOCore

/// The largest value a variable byte integer can carry (four bytes).
public let maximumVariableByteInteger = 268_435_455

extension ByteBuffer {
    // MARK: Variable byte integers

    /// Reads a variable byte integer that must be complete in the buffer.
    mutating func readMQTTVariableByteInteger() throws(MQTTDecodingError) -> Int {
        switch self.peekMQTTVariableByteInteger(at: self.readerIndex) {
        case .value(let value, let length):
            self.moveReaderIndex(forwardBy: length)
            return value
        case .needMoreBytes:
            throw MQTTDecodingError(.remainingLengthMismatch, "variable byte integer runs past the end of the packet")
        case .tooLong:
            throw MQTTDecodingError(.variableByteIntegerTooLong, "variable byte integer longer than 4 bytes")
        }
    }

    /// What ``peekMQTTVariableByteInteger(at:)`` found.
    public enum VariableByteIntegerPeek: Sendable, Equatable {
        /// The value and how many bytes (1 to 4) encode it.
        case value(Int, length: Int)
        case needMoreBytes
        /// More than four bytes: malformed.
        case tooLong
    }

    /// Reads a variable byte integer (a remaining length) at `index` without moving the reader index.
    public func peekMQTTVariableByteInteger(at index: Int) -> VariableByteIntegerPeek {
        var value = 0
        var multiplier = 1
        for offset in 0..<4 {
            guard let byte = self.getInteger(at: index + offset, as: UInt8.self) else { return .needMoreBytes }
            value += Int(byte & 0x7F) * multiplier
            if byte & 0x80 == 0 { return .value(value, length: offset + 1) }
            multiplier &*= 128
        }
        return .tooLong
    }

    /// Writes `value` (0...268,435,455) as a variable byte integer.
    /// - Returns: the number of bytes written (1 to 4).
    @discardableResult
    public mutating func writeMQTTVariableByteInteger(_ value: Int) -> Int {
        var remaining = value
        var written = 0
        repeat {
            var byte = UInt8(truncatingIfNeeded: remaining & 0x7F)
            remaining >>= 7
            if remaining > 0 { byte |= 0x80 }
            self.writeInteger(byte)
            written += 1
        } while remaining > 0
        return written
    }

    // MARK: Fixed-size integers

    mutating func readMQTTByte() throws(MQTTDecodingError) -> UInt8 {
        guard let value = self.readInteger(as: UInt8.self) else { throw Self.truncated }
        return value
    }

    mutating func readMQTTUInt16() throws(MQTTDecodingError) -> UInt16 {
        guard let value = self.readInteger(endianness: .big, as: UInt16.self) else { throw Self.truncated }
        return value
    }

    mutating func readMQTTUInt32() throws(MQTTDecodingError) -> UInt32 {
        guard let value = self.readInteger(endianness: .big, as: UInt32.self) else { throw Self.truncated }
        return value
    }

    /// Reads a packet identifier, refusing 0.
    mutating func readMQTTPacketIdentifier() throws(MQTTDecodingError) -> UInt16 {
        let identifier = try self.readMQTTUInt16()
        guard identifier != 0 else { throw MQTTDecodingError(.packetIdentifierZero, "packet identifier 0") }
        return identifier
    }

    // MARK: Strings and binary data

    /// Reads a two-byte-length UTF-8 string, refusing invalid UTF-8 and U+0000.
    mutating func readMQTTString() throws(MQTTDecodingError) -> String {
        try self.readValidatedUTF8(rejectingWildcards: false)
    }

    /// Reads a topic name: a string that also may not hold `+` or `#`, checked in the same pass.
    mutating func readMQTTTopicName() throws(MQTTDecodingError) -> String {
        try self.readValidatedUTF8(rejectingWildcards: true)
    }

    /// Reads two-byte-length binary data as a slice of this buffer (no copy).
    mutating func readMQTTBinary() throws(MQTTDecodingError) -> ByteBuffer {
        let length = Int(try self.readMQTTUInt16())
        guard let slice = self.readSlice(length: length) else { throw Self.truncated }
        return slice
    }

    private enum StringCheck {
        case valid(String)
        case nullCharacter
        case wildcard
        case invalidUTF8
    }

    private mutating func readValidatedUTF8(rejectingWildcards: Bool) throws(MQTTDecodingError) -> String {
        let length = Int(try self.readMQTTUInt16())
        guard self.readableBytes >= length else { throw Self.truncated }
        let check: StringCheck = self.withUnsafeReadableBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw.prefix(length))
            var ascii = true
            var wildcard = false
            for byte in bytes {
                switch byte {
                case 0: return .nullCharacter
                case UInt8(ascii: "+"), UInt8(ascii: "#"): wildcard = true
                case 0x80...: ascii = false
                default: break
                }
            }
            if wildcard && rejectingWildcards { return .wildcard }
            if ascii { return .valid(String(decoding: bytes, as: UTF8.self)) }
            return String(validating: bytes, as: UTF8.self).map { .valid($0) } ?? .invalidUTF8
        }
        switch check {
        case .valid(let string):
            self.moveReaderIndex(forwardBy: length)
            return string
        case .nullCharacter: throw MQTTDecodingError(.nullCharacter, "string contains U+0000")
        case .wildcard: throw MQTTDecodingError(.wildcardInTopicName, "topic name contains a wildcard (+ or #)")
        case .invalidUTF8: throw MQTTDecodingError(.invalidUTF8, "string is not well-formed UTF-8")
        }
    }

    mutating func writeMQTTString(_ string: String) {
        self.writeInteger(UInt16(truncatingIfNeeded: string.utf8.count))
        self.writeString(string)
    }

    mutating func writeMQTTBinary(_ data: ByteBuffer) {
        self.writeInteger(UInt16(truncatingIfNeeded: data.readableBytes))
        self.writeImmutableBuffer(data)
    }

    static let truncated = MQTTDecodingError(.remainingLengthMismatch, "packet content ends before its remaining length says")
}

/// Sizes of encoded fields, checked against the protocol's limits before anything is written.
enum EncodedSize {
    static func variableByteInteger(_ value: Int) -> Int {
        switch value {
        case ..<128: 1
        case ..<16_384: 2
        case ..<2_097_152: 3
        default: 4
        }
    }

    static func string(_ string: String, _ field: @autoclosure () -> String) throws(MQTTEncodingError) -> Int {
        let count = string.utf8.count
        guard count <= 65_535 else { throw MQTTEncodingError("\(field()) is \(count) bytes; at most 65,535 fit") }
        return 2 + count
    }

    static func binary(_ data: ByteBuffer, _ field: @autoclosure () -> String) throws(MQTTEncodingError) -> Int {
        let count = data.readableBytes
        guard count <= 65_535 else { throw MQTTEncodingError("\(field()) is \(count) bytes; at most 65,535 fit") }
        return 2 + count
    }
}

import Foundation

/// One thing wrong with a message: the field's path (`detection_data.plates[0].plate_number`)
/// and why, as a detection's `rejected` ack carries it.
public struct FieldError: Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }

    /// `{"path", "reason"}`.
    public var json: JSONValue { ["path": .string(path), "reason": .string(reason)] }
}

/// A message that cannot be accepted, with every reason found.
public struct MessageValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var errors: [FieldError]

    public init(_ errors: [FieldError]) { self.errors = errors }

    public init(path: String, reason: String) { self.errors = [FieldError(path: path, reason: reason)] }

    public var description: String { errors.map(\.description).joined(separator: "; ") }
}

/// Reads typed fields out of JSON objects, collecting a ``FieldError`` for each missing or
/// mistyped one instead of stopping at the first, so that a refusal names everything wrong.
public struct FieldReader: Sendable {
    public private(set) var errors: [FieldError] = []

    public init() {}

    /// `path.key`, or `key` at the top.
    public static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public mutating func fail(_ path: String, _ reason: String) { errors.append(FieldError(path: path, reason: reason)) }

    /// Throws the collected errors, if any.
    public func check() throws(MessageValidationError) {
        if !errors.isEmpty { throw MessageValidationError(errors) }
    }

    private mutating func value(_ object: JSONObject, _ key: String, _ path: String, required: Bool) -> JSONValue? {
        guard let value = object[key], !value.isNull else {
            if required { fail(Self.join(path, key), "missing") }
            return nil
        }
        return value
    }

    private mutating func wrongType(_ value: JSONValue, _ path: String, _ key: String, expected: String) {
        fail(Self.join(path, key), "expected \(expected), found \(value.typeName)")
    }

    /// A member of one JSON type: `extract` gives it, or nil for another type (an error naming `expected`).
    private mutating func typed<T>(
        _ object: JSONObject,
        _ key: String,
        _ path: String,
        required: Bool,
        expected: String,
        _ extract: (JSONValue) -> T?
    ) -> T? {
        guard let value = value(object, key, path, required: required) else { return nil }
        guard let member = extract(value) else {
            wrongType(value, path, key, expected: expected)
            return nil
        }
        return member
    }

    /// A string member; required ones must not be empty.
    public mutating func string(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = true) -> String? {
        guard let value = value(object, key, path, required: required) else { return nil }
        guard case .string(let text) = value else {
            wrongType(value, path, key, expected: "a string")
            return nil
        }
        if required && text.isEmpty {
            fail(Self.join(path, key), "must not be empty")
            return nil
        }
        return text
    }

    /// The most UTF-8 bytes of an identifier (`message_id`, `camera_id`, `checkpoint_id`): stores
    /// index them, and an index entry has a size limit (PostgreSQL's B-tree: about 2,700 bytes).
    public static let maximumIdentifierBytes = 256
    /// The most UTF-8 bytes of a plate number: plates are matched against the watch-list with
    /// work that grows with the square of their length, and indexed.
    public static let maximumPlateBytes = 128

    /// Why `text` cannot be stored as an identifier or a plate, or `nil`: a control character
    /// (PostgreSQL's text cannot hold NUL) or more than `maximumBytes` of UTF-8.
    public static func unstorableTextReason(_ text: String, maximumBytes: Int) -> String? {
        if text.utf8.count > maximumBytes { return "longer than \(maximumBytes) bytes" }
        if text.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) {
            return "must not contain control characters"
        }
        return nil
    }

    /// A string member that is stored in a column of its own and indexed (an identifier, a
    /// plate): no control characters and at most `maximumBytes` of UTF-8.
    public mutating func storableText(
        _ object: JSONObject,
        _ key: String,
        at path: String = "",
        required: Bool = true,
        maximumBytes: Int = FieldReader.maximumIdentifierBytes
    ) -> String? {
        guard let text = string(object, key, at: path, required: required) else { return nil }
        if let reason = Self.unstorableTextReason(text, maximumBytes: maximumBytes) {
            fail(Self.join(path, key), reason)
            return nil
        }
        return text
    }

    /// The `camera_id` member, which must agree with the camera the topic names (the topic
    /// says who sent a message). With `required` false a missing one is the topic's camera.
    public mutating func cameraID(_ object: JSONObject, topicCamera: String?, required: Bool = true) -> String? {
        if let topicCamera, let reason = Self.unstorableTextReason(topicCamera, maximumBytes: Self.maximumIdentifierBytes) {
            fail("camera_id", "the topic's camera id is \(reason)")
            return nil
        }
        let cameraID = storableText(object, "camera_id", required: required || topicCamera == nil) ?? topicCamera
        if let cameraID, let topicCamera, cameraID != topicCamera {
            fail("camera_id", "\"\(cameraID)\" disagrees with the topic's camera \"\(topicCamera)\"")
        }
        return cameraID
    }

    /// A string member that must be one of `allowed`.
    public mutating func oneOf(_ object: JSONObject, _ key: String, _ allowed: [String], at path: String = "", required: Bool = true) -> String? {
        guard let text = string(object, key, at: path, required: required) else { return nil }
        guard allowed.contains(text) else {
            fail(Self.join(path, key), "must be one of \(allowed.joined(separator: ", ")), found \"\(text)\"")
            return nil
        }
        return text
    }

    /// A number member.
    public mutating func number(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = false) -> Double? {
        typed(object, key, path, required: required, expected: "a number") { $0.doubleValue }
    }

    /// A whole-number member.
    public mutating func integer(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = false) -> Int? {
        typed(object, key, path, required: required, expected: "an integer") { $0.intValue }
    }

    /// A boolean member.
    public mutating func bool(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = false) -> Bool? {
        typed(object, key, path, required: required, expected: "a boolean") { $0.boolValue }
    }

    /// An object member.
    public mutating func object(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = false) -> JSONObject? {
        typed(object, key, path, required: required, expected: "an object") { $0.objectValue }
    }

    /// An array member.
    public mutating func array(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = false) -> [JSONValue]? {
        typed(object, key, path, required: required, expected: "an array") { $0.arrayValue }
    }

    /// An RFC 3339 timestamp member.
    public mutating func timestamp(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = true) -> Date? {
        guard let text = string(object, key, at: path, required: required) else { return nil }
        guard let date = RFC3339.date(from: text) else {
            fail(Self.join(path, key), "not an RFC 3339 timestamp: \"\(text)\"")
            return nil
        }
        return date
    }

    /// A bounding box: an array of four numbers.
    public mutating func boundingBox(_ object: JSONObject, _ key: String, at path: String) -> [Double]? {
        guard let elements = array(object, key, at: path) else { return nil }
        let numbers = elements.compactMap(\.doubleValue)
        guard numbers.count == 4, elements.count == 4 else {
            fail(Self.join(path, key), "expected 4 numbers")
            return nil
        }
        return numbers
    }

    /// The elements of an array member that are objects, each with its path; others are errors.
    public mutating func objects(_ object: JSONObject, _ key: String, at path: String = "", required: Bool = false) -> [(JSONObject, String)] {
        guard let elements = array(object, key, at: path, required: required) else { return [] }
        var result: [(JSONObject, String)] = []
        for (offset, element) in elements.enumerated() {
            let elementPath = "\(Self.join(path, key))[\(offset)]"
            guard let member = element.objectValue else {
                fail(elementPath, "expected an object, found \(element.typeName)")
                continue
            }
            result.append((member, elementPath))
        }
        return result
    }
}

extension JSONObject {
    /// Parses `bytes` as a JSON object, or says why it is not one.
    public static func parse(_ bytes: some Collection<UInt8>) throws(MessageValidationError) -> JSONObject {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw MessageValidationError(path: "", reason: error.description)
        }
        guard let object = value.objectValue else {
            throw MessageValidationError(path: "", reason: "expected a JSON object, found \(value.typeName)")
        }
        return object
    }
}

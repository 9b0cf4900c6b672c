import LPRModel

/// A Modbus request arriving on `{prefix}/modbus/request`, checked and turned into the local
/// web API's query: the pure part of the gateway's bridge.
///
/// A read (`function_code` 3 or 4) becomes
/// `/api/inverter/modbus?device_id=...&function_code=3&address=...&size=...&type=...&endianess=...&scale_factor=...`,
/// a write (`function_code` 16) becomes
/// `/api/inverter/modbus?device_id=...&address=...&function_code=16&values=...&type=...`.
/// Values are written as they came (`1` stays `1`; a list is comma-separated).
public struct ModbusRequest: Sendable, Hashable {
    /// The request as it arrived (kept whole, unknown fields included, for the response).
    public var original: JSONValue
    /// The query parameters, in the order the web API documents them.
    public var query: [(name: String, value: String)]

    public static func == (lhs: ModbusRequest, rhs: ModbusRequest) -> Bool {
        lhs.original == rhs.original && lhs.query.elementsEqual(rhs.query) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(original)
        for (name, value) in query {
            hasher.combine(name)
            hasher.combine(value)
        }
    }

    /// The path and query of the web API call.
    public var pathAndQuery: String {
        "/api/inverter/modbus?" + query.map { "\($0.name)=\(Self.percentEncoded($0.value))" }.joined(separator: "&")
    }

    /// Parses and checks a request payload.
    public init(payload: [UInt8]) throws(ModbusRequestError) {
        let request: JSONValue
        do {
            request = try JSONValue.parse(payload)
        } catch {
            throw ModbusRequestError(received: .string(String(decoding: payload, as: UTF8.self)), "the request is not JSON: \(error)")
        }
        try self.init(request: request)
    }

    /// Checks a parsed request.
    public init(request: JSONValue) throws(ModbusRequestError) {
        guard case .object = request else {
            throw ModbusRequestError(received: request, "the request is \(request.typeName), not an object")
        }
        func field(_ name: String, required: Bool = true) throws(ModbusRequestError) -> String? {
            guard let value = request[name], value != .null else {
                if required { throw ModbusRequestError(received: request, "\(name) is missing") }
                return nil
            }
            switch value {
            case .string(let text): return text
            case .number(let text): return text
            case .bool(let flag): return flag ? "true" : "false"
            default: throw ModbusRequestError(received: request, "\(name) is \(value.typeName), expected a number or a string")
            }
        }
        func integer(_ name: String, required: Bool = true) throws(ModbusRequestError) -> String? {
            guard let text = try field(name, required: required) else { return nil }
            guard let number = Int(text), number >= 0 else {
                throw ModbusRequestError(received: request, "\(name) is \(text), expected a whole number of 0 or more")
            }
            return String(number)
        }

        guard let codeValue = request["function_code"] else { throw ModbusRequestError(received: request, "function_code is missing") }
        guard let code = codeValue.intValue ?? codeValue.stringValue.flatMap({ Int($0) }) else {
            throw ModbusRequestError(received: request, "function_code is \(codeValue.jsonText), expected 3, 4 or 16")
        }
        let deviceID = try field("device_id")!
        var query: [(String, String)] = []
        switch code {
        case 3, 4:
            query.append(("device_id", deviceID))
            query.append(("function_code", String(code)))
            query.append(("address", try integer("address")!))
            query.append(("size", try integer("size")!))
            for name in ["type", "endianess", "scale_factor"] {
                if let value = try field(name, required: false) { query.append((name, value)) }
            }
        case 16:
            query.append(("device_id", deviceID))
            query.append(("address", try integer("address")!))
            query.append(("function_code", "16"))
            guard let values = request["values"], values != .null else { throw ModbusRequestError(received: request, "values is missing") }
            query.append(("values", try Self.values(values, request: request)))
            if let type = try field("type", required: false) { query.append(("type", type)) }
        default:
            throw ModbusRequestError(received: request, "function_code \(code) is not supported: 3 or 4 (read) or 16 (write)")
        }
        self.original = request
        self.query = query
    }

    /// The values of a write, as the web API takes them: numbers as written, a list comma-separated.
    private static func values(_ value: JSONValue, request: JSONValue) throws(ModbusRequestError) -> String {
        switch value {
        case .number(let text): return text
        case .string(let text): return text
        case .array(let elements):
            guard !elements.isEmpty else { throw ModbusRequestError(received: request, "values is an empty list") }
            var texts: [String] = []
            for element in elements {
                guard case .number(let text) = element else {
                    throw ModbusRequestError(received: request, "values holds \(element.typeName), expected numbers")
                }
                texts.append(text)
            }
            return texts.joined(separator: ",")
        default:
            throw ModbusRequestError(received: request, "values is \(value.typeName), expected a number or a list of numbers")
        }
    }

    /// Percent-encodes a query value, leaving unreserved characters and commas as they are.
    static func percentEncoded(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ","):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}

/// A Modbus request that cannot be carried out; the gateway answers it with an error response.
public struct ModbusRequestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What arrived: the JSON, or the text as a string when it was not JSON.
    public let received: JSONValue
    public let reason: String

    public init(received: JSONValue, _ reason: String) {
        self.received = received
        self.reason = reason
    }

    public var description: String { reason }
}

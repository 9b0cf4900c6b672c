import Foundation
import LPRModel

/// The messages the gateway publishes, made from what the web API answered.
public enum GatewayMessages {
    /// `{"timestamp", "type": "modbus_response", "request": {...}, "response": {...}}`.
    public static func modbusResponse(request: JSONValue, response: JSONValue, at date: Date) -> JSONValue {
        .object(
            JSONObject([
                ("timestamp", .string(timestamp(date))),
                ("type", .string("modbus_response")),
                ("request", request),
                ("response", response),
            ])
        )
    }

    /// The response part for a failed call: `{"success": false, "error": ...}`.
    public static func failure(_ error: String) -> JSONValue {
        .object(JSONObject([("success", .bool(false)), ("error", .string(error))]))
    }

    /// `{"timestamp", "type": "gateway_state", ...the API's fields}`; the API's own `timestamp`
    /// and `type`, if any, give way to ours.
    public static func state(api: JSONValue, at date: Date) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [("timestamp", .string(timestamp(date))), ("type", .string("gateway_state"))]
        for member in api.objectValue?.members ?? [] where member.key != "timestamp" && member.key != "type" {
            members.append(member)
        }
        return .object(JSONObject(members))
    }

    /// The state published when the web API does not answer.
    public static func fallbackState(uptime: Double, version: String, error: String, at date: Date) -> JSONValue {
        .object(
            JSONObject([
                ("timestamp", .string(timestamp(date))),
                ("type", .string("gateway_state")),
                ("status", .string("api_unavailable")),
                ("uptime", .number(String(format: "%.3f", uptime))),
                ("version", .string(version)),
                ("error", .string(error)),
            ])
        )
    }

    /// ISO 8601 in UTC with microseconds: `2024-08-03T15:05:30.123456Z`.
    public static func timestamp(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        var microseconds = Int(((interval - Double(seconds)) * 1_000_000).rounded())
        if microseconds >= 1_000_000 {
            seconds += 1
            microseconds -= 1_000_000
        }
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
            Int(parts.tm_year) + 1900,
            Int(parts.tm_mon) + 1,
            Int(parts.tm_mday),
            Int(parts.tm_hour),
            Int(parts.tm_min),
            Int(parts.tm_sec),
            microseconds
        )
    }
}

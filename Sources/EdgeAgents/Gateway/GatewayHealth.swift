import Foundation

/// The health file behind `databus gateway --check`: the running gateway writes the time of
/// its last successful state publish, and the check passes while that is recent.
public enum GatewayHealth {
    /// How recent the last state publish must be.
    public static let maximumAge: Double = 15

    /// The default file: in the temporary folder, so a container needs no volume for it.
    public static var defaultPath: String { (NSTemporaryDirectory() as NSString).appendingPathComponent("databus-gateway.health") }

    /// Records a successful state publish at `date`.
    public static func record(_ date: Date, at path: String) throws {
        try String(format: "%.3f\n", date.timeIntervalSince1970).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Whether the last recorded publish is at most ``maximumAge`` seconds before `now`, and why not.
    public static func check(path: String, now: Date = Date()) -> (healthy: Bool, detail: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return (false, "no state publish recorded yet (\(path) is missing)")
        }
        guard let seconds = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return (false, "\(path) does not hold a time")
        }
        let age = now.timeIntervalSince1970 - seconds
        if age <= maximumAge && age > -maximumAge {
            return (true, String(format: "last state publish %.1f s ago", max(age, 0)))
        }
        return (false, String(format: "last state publish %.1f s ago (more than %.0f s)", age, maximumAge))
    }
}

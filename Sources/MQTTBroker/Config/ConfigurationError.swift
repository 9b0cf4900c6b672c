/// A configuration file the broker cannot run with: names the file, the line and the key.
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    public let file: String
    /// 1-based; 0 when the problem is the file itself.
    public let line: Int
    public let key: String?
    public let message: String

    public init(file: String, line: Int, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let location = line > 0 ? "\(file):\(line)" : file
        if let key { return "\(location): \(key): \(message)" }
        return "\(location): \(message)"
    }
}

import Configuration
import Foundation

/// An agent's settings, looked up in order in its command-line flags, the process environment
/// and a `.env`-style file, through swift-configuration.
///
/// Names are the environment variables the field uses (`MQTT_HOST`, `MQTT_BROKER_PORT`, ...);
/// a flag is given under the same name.
public struct AgentSettings: Sendable {
    private let reader: ConfigReader
    /// The `.env` file read, when there was one.
    public let environmentFile: String?

    /// - Parameters:
    ///   - flags: values given on the command line, by environment variable name; they win.
    ///   - environment: the process environment (tests pass their own).
    ///   - environmentFile: a `.env`-style file (`NAME=value` lines); a missing file is skipped.
    public init(
        flags: [String: String] = [:],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        environmentFile: String? = nil
    ) async throws(AgentSettingsError) {
        var providers: [any ConfigProvider] = []
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (name, value) in flags { values[Self.key(name)] = ConfigValue(.string(value), isSecret: false) }
        providers.append(InMemoryProvider(name: "flags", values: values))
        providers.append(EnvironmentVariablesProvider(environmentVariables: environment))
        var readFile: String?
        if let environmentFile, FileManager.default.fileExists(atPath: environmentFile) {
            do {
                providers.append(try await EnvironmentVariablesProvider(environmentFilePath: .init(environmentFile), allowMissing: true))
                readFile = environmentFile
            } catch {
                throw AgentSettingsError(name: nil, "cannot read \(environmentFile): \(error)")
            }
        }
        self.reader = ConfigReader(providers: providers)
        self.environmentFile = readFile
    }

    /// `MQTT_BROKER_HOST` -> the key `mqtt.broker.host`, which EnvironmentVariablesProvider maps back.
    private static func key(_ name: String) -> AbsoluteConfigKey {
        AbsoluteConfigKey(name.lowercased().split(separator: "_").map(String.init))
    }

    private static func configKey(_ name: String) -> ConfigKey {
        ConfigKey(name.lowercased().split(separator: "_").map(String.init))
    }

    /// The setting `name`, or `nil` when no source has it (an empty value counts as none).
    public func string(_ name: String, isSecret: Bool = false) -> String? {
        guard let value = reader.string(forKey: Self.configKey(name), isSecret: isSecret), !value.isEmpty else { return nil }
        return value
    }

    /// The setting `name` as a TCP port (1-65535), or `nil` when not set.
    public func port(_ name: String) throws(AgentSettingsError) -> Int? {
        guard let text = string(name) else { return nil }
        guard let port = Int(text.trimmingCharacters(in: .whitespaces)), (1...65_535).contains(port) else {
            throw AgentSettingsError(name: name, "\"\(text)\" is not a port number (1-65535)")
        }
        return port
    }
}

/// A setting that cannot be used, naming it.
public struct AgentSettingsError: Error, Sendable, Hashable, CustomStringConvertible {
    public let name: String?
    public let reason: String

    public init(name: String?, _ reason: String) {
        self.name = name
        self.reason = reason
    }

    public var description: String { name.map { "\($0): \(reason)" } ?? reason }
}

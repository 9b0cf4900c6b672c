import Foundation
import MQTTClient

/// The gateway's trust in the broker: `MQTT_ROOT_CA`, `--cafile`, or the system's trust store.
public enum GatewayTLS {
    /// The CA from `MQTT_ROOT_CA` (a PEM, possibly on one line with `\n` escapes) written to a
    /// private temporary file, else `caFile`, else the system trust store.
    public static func trust(rootCA: String?, caFile: String?) throws(AgentSettingsError) -> MQTTClient.TLS {
        if let caFile { return MQTTClient.TLS(trust: .caFile(caFile)) }
        guard let rootCA else { return MQTTClient.TLS() }
        let pem = rootCA.replacingOccurrences(of: "\\n", with: "\n").trimmingCharacters(in: .whitespacesAndNewlines) + "\n"
        guard pem.contains("-----BEGIN CERTIFICATE-----") && pem.contains("-----END CERTIFICATE-----") else {
            throw AgentSettingsError(name: "MQTT_ROOT_CA", "is not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)")
        }
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("databus-gateway-ca-\(getpid()).pem")
        guard FileManager.default.createFile(atPath: path, contents: Data(pem.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw AgentSettingsError(name: "MQTT_ROOT_CA", "cannot write it to \(path)")
        }
        return MQTTClient.TLS(trust: .caFile(path))
    }
}

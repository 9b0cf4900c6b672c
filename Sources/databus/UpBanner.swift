import DatabusTools
import Foundation
import LPRModel
import NIOCore

/// What `databus up` prints once ready: what a newcomer needs to see the dashboard, watch the
/// traffic, send a detection and connect a camera.
struct Banner {
    let folder: UpDataFolder
    let contents: UpDataFolder.Contents
    let mqtt: (host: String, port: Int)
    /// Whether anonymous clients may connect to the plain listener.
    let anonymous: Bool
    let tls: [SocketAddress]
    let command: String

    func text(dashboard: String) -> String {
        let token =
            contents.madeAdminToken
            ? "\(contents.adminToken)\n                (shown this once; it stays in \(folder.adminTokenFile), a read-only one in \(folder.readOnlyTokenFile))"
            : "in \(folder.adminTokenFile) (read-only: \(folder.readOnlyTokenFile))"
        var lines = [
            "",
            "databus up: ready",
            "  Dashboard     \(dashboard)",
            "  Admin token   \(token)",
            "  MQTT          mqtt://\(mqtt.host):\(mqtt.port)\(anonymous ? " (anonymous clients on loopback)" : " (users from \(folder.passwordFile))")",
        ]
        for address in tls {
            let host = address.ipAddress.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "?"
            lines.append("  MQTT + mTLS   mqtts://\(host):\(address.port ?? 0)  (client certificates from the CA in \(folder.certificatesFolder)/ca)")
        }
        lines += [
            "  Cameras       certificates in \(folder.certificatesFolder)/CAM001/ (ca.crt, CAM001.crt, CAM001.key);",
            "                another: \(command) certs create --out \(folder.certificatesFolder) --client CAM002",
            "",
            "Watch the traffic:",
            "  \(command) sub -h \(mqtt.host) -p \(mqtt.port) -t 'lprserver/#' -v",
            "Send a detection (it shows on the dashboard):",
            "  \(command) pub -h \(mqtt.host) -p \(mqtt.port) -q 1 -t lprserver/cameras/CAM001/detection -m '\(sampleDetection)'",
            "The REST API:",
            "  curl -H \"Authorization: Bearer $(cat \(folder.adminTokenFile))\" \(dashboard)api/detections",
            "",
        ]
        return lines.joined(separator: "\n")
    }

    /// A seed-format detection with a fresh message_id.
    var sampleDetection: String {
        let detection = Detection(
            messageID: UUID().uuidString.lowercased(),
            timestamp: Date(),
            cameraID: "CAM001",
            checkpointID: "CP001",
            data: DetectionData(
                confidenceScore: 0.95,
                processingTimeMs: 150,
                vehicles: [
                    Vehicle(
                        vehicleIndex: 0,
                        bbox: [100, 100, 200, 200],
                        confidence: 0.95,
                        vehicleClass: "car",
                        vehicleType: "sedan",
                        color: "white",
                        brand: "Toyota",
                        model: "Camry",
                        year: 2020
                    )
                ],
                plates: [
                    Plate(
                        plateIndex: 0,
                        plateNumber: "ABC1234",
                        bbox: [150, 120, 180, 140],
                        confidence: 0.92,
                        country: "TH",
                        province: "Bangkok"
                    )
                ]
            ),
            metadata: ["weather": "clear", "lighting": "daylight"]
        )
        return JSONValue.object(detection.json).jsonText
    }
}

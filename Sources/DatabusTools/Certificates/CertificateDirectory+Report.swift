import Foundation

extension CertificateDirectory.Report {
    /// What `databus certs create` prints: what was made or kept, the mosquitto.conf lines
    /// for the broker, and how a client connects.
    public func text(port: Int = 8883) -> String {
        var lines: [String] = []
        lines.append(
            "\(createdCA ? "Created" : "Reused") the CA \(caSubject) in \(directory.caFolder) (keep ca.key there; never copy it to a device)"
        )
        for component in [broker] + clients {
            lines.append("\(component.created ? "Issued" : "Kept  ") \(component.name): \(component.folder)/")
        }
        for note in notes { lines.append("Note: \(note)") }
        lines.append("")
        lines.append("# mosquitto.conf (databus broker or mosquitto), with \(broker.folder) copied to the broker:")
        lines.append("listener \(port)")
        lines.append("cafile \(broker.caCertificate)")
        lines.append("certfile \(broker.certificate)")
        lines.append("keyfile \(broker.privateKey)")
        lines.append("require_certificate true")
        lines.append("use_identity_as_username true")
        let revocationList = broker.folder + "/crl.pem"
        if FileManager.default.fileExists(atPath: revocationList) {
            lines.append("crlfile \(revocationList)")
        } else {
            lines.append("# crlfile \(revocationList)   (once databus certs revoke or crl has written it)")
        }
        if let client = clients.first {
            lines.append("")
            lines.append("# A client (\(client.name)) connects with its own folder:")
            lines.append(
                "mosquitto_pub -h HOST -p \(port) --cafile \(client.caCertificate) --cert \(client.certificate) --key \(client.privateKey) -t test -m hello"
            )
        }
        return lines.joined(separator: "\n")
    }
}

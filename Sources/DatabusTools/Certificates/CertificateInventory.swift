import Foundation
import MQTTBroker
import X509

/// What `databus certs list` reports: the CA, every certificate it issued, and the revocation
/// list, each with how long it has left; and whether any needs attention now.
public struct CertificateInventory: Sendable {
    /// One certificate (or the CA, or the revocation list) and where it stands.
    public struct Row: Sendable, Hashable {
        public let commonName: String
        /// Hex, as OpenSSL prints it (`openssl x509 -serial`); empty for the revocation list.
        public let serialNumber: String
        /// The certificate's expiry, or the revocation list's next update.
        public let notValidAfter: Date
        public let state: State

        /// Whole days from now to ``notValidAfter``, negative once it passed.
        public func daysLeft(now: Date) -> Int {
            Int((notValidAfter.timeIntervalSince(now) / 86_400).rounded(.down))
        }
    }

    public enum State: Sendable, Hashable {
        /// In use and not close to its end.
        case valid
        /// In use and ends within the warning period: renew it (or re-issue the list).
        case expiring
        case expired
        /// Revoked: no longer counts, whatever its dates.
        case revoked(reason: RevocationReason, date: Date)
        /// Still valid, but a newer certificate with the same CN was issued since: no longer counts.
        case renewed

        /// Whether this row makes `list` exit with status 1.
        public var needsAttention: Bool {
            switch self {
            case .expiring, .expired: true
            case .valid, .revoked, .renewed: false
            }
        }
    }

    public let directory: CertificateDirectory
    public let authority: Row
    public let certificates: [Row]
    /// The revocation list, once `revoke` or `crl` wrote one.
    public let revocationList: Row?
    /// Certificates on the revocation list.
    public let revokedOnList: Int
    public let warningDays: Int
    public let now: Date

    /// Whether anything expired or ends within ``warningDays``: `list`'s exit status 1.
    public var needsAttention: Bool {
        ([authority] + certificates + (revocationList.map { [$0] } ?? [])).contains { $0.state.needsAttention }
    }

    /// Reads the CA folder `directory` (its key is not needed).
    /// - Throws: ``CertificateToolError`` when the folder has no CA, or its index or revocation
    ///   list cannot be read.
    public init(directory: CertificateDirectory, warningDays: Int = 30, now: Date = Date()) throws {
        guard (0...36_500).contains(warningDays) else { throw CertificateToolError("--warn-days must be between 0 and 36500") }
        self.directory = directory
        self.warningDays = warningDays
        self.now = now
        let ca = try directory.loadCACertificate()
        let index = try directory.withLock { try directory.loadIndex(ca: ca) }
        func state(until end: Date) -> State {
            end < now ? .expired : end < now.addingTimeInterval(Double(warningDays) * 86_400) ? .expiring : .valid
        }
        authority = Row(
            commonName: ClientCertificateIdentity(certificate: ca).commonName ?? ClientCertificateIdentity.rfc2253(ca.subject),
            serialNumber: CertificateIndex.serialText(ca.serialNumber.bytes),
            notValidAfter: ca.notValidAfter,
            state: state(until: ca.notValidAfter)
        )
        // The newest unrevoked certificate of each CN is the one in use.
        var current: [String: String] = [:]
        for entry in index.entries where entry.revocation == nil { current[entry.commonName] = entry.serialNumber }
        certificates = index.entries.map { entry in
            let rowState: State
            if let revocation = entry.revocation {
                rowState = .revoked(reason: revocation.reason, date: revocation.date)
            } else if current[entry.commonName] != entry.serialNumber {
                rowState = .renewed
            } else {
                rowState = state(until: entry.notValidAfter)
            }
            return Row(commonName: entry.commonName, serialNumber: entry.serialNumber, notValidAfter: entry.notValidAfter, state: rowState)
        }
        if FileManager.default.fileExists(atPath: directory.revocationListFile) {
            let lists: [CertificateRevocationList]
            do {
                lists = try CertificateRevocationList.lists(pem: try directory.read(directory.revocationListFile))
            } catch {
                throw CertificateToolError("\(directory.revocationListFile): \(error)")
            }
            guard let list = lists.first, list.isSigned(by: ca) else {
                throw CertificateToolError("\(directory.revocationListFile) is not signed by the CA in \(directory.caFolder)")
            }
            let nextUpdate = list.nextUpdate ?? .distantFuture
            revocationList = Row(commonName: "revocation list", serialNumber: "", notValidAfter: nextUpdate, state: state(until: nextUpdate))
            revokedOnList = list.revokedSerialNumbers.count
        } else {
            revocationList = nil
            revokedOnList = 0
        }
    }

    /// The table `databus certs list` prints.
    public func text() -> String {
        let header = ["CN", "SERIAL", "EXPIRES", "DAYS", "STATUS"]
        var rows = [header]
        rows.append(cells(authority, note: "(CA)"))
        rows += certificates.map { cells($0, note: nil) }
        var lines = Self.aligned(rows)
        if let revocationList {
            let days = revocationList.daysLeft(now: now)
            let status = revocationList.state == .expired ? "EXPIRED: brokers with crlfile refuse every client" : "\(days) days left"
            lines.append("")
            lines.append(
                "Revocation list \(directory.revocationListFile): \(revokedOnList) revoked, next update \(CertificateDirectory.day(revocationList.notValidAfter)) (\(status))"
            )
            if revocationList.state.needsAttention {
                lines.append("Re-issue it: databus certs crl --out \(directory.path), then copy it to the brokers and send them SIGHUP")
            }
        } else {
            lines.append("")
            lines.append("No revocation list yet (databus certs revoke or databus certs crl writes \(directory.revocationListFile))")
        }
        let attention = ([authority] + certificates).filter { $0.state.needsAttention }
        if !attention.isEmpty {
            lines.append(
                "\(attention.count) certificate\(attention.count == 1 ? "" : "s") expired or expiring within \(warningDays) days: databus certs renew --out \(directory.path) NAME"
            )
        }
        return lines.joined(separator: "\n")
    }

    private func cells(_ row: Row, note: String?) -> [String] {
        let status: String
        switch row.state {
        case .valid: status = "valid"
        case .expiring: status = "EXPIRING"
        case .expired: status = "EXPIRED"
        case .revoked(let reason, let date):
            status = "revoked \(CertificateDirectory.day(date))" + (reason == .unspecified ? "" : " (\(reason.name))")
        case .renewed: status = "valid, renewed since"
        }
        return [
            row.commonName + (note.map { " \($0)" } ?? ""), row.serialNumber, CertificateDirectory.day(row.notValidAfter),
            "\(row.daysLeft(now: now))",
            status,
        ]
    }

    /// Columns padded to their widest cell, two spaces apart.
    private static func aligned(_ rows: [[String]]) -> [String] {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { cells in
            cells.enumerated().map { column, cell in
                column == cells.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
    }
}

import Crypto
import Foundation
import MQTTBroker
import X509
import _CryptoExtras

/// Revoking, re-issuing the revocation list, and renewing: what happens to certificates after
/// `create`, all recorded in the CA folder's index.
extension CertificateDirectory {
    /// How long a revocation list stays current when no `--crl-days` is given.
    public static let defaultRevocationListDays = 90

    /// What a `revoke` run did.
    public struct RevocationReport: Sendable {
        /// Certificates revoked by this run.
        public let revoked: [CertificateIndex.Entry]
        /// Certificates of that name that were revoked before.
        public let alreadyRevoked: [CertificateIndex.Entry]
        public let revocationList: RevocationListReport
    }

    /// The revocation list a run wrote.
    public struct RevocationListReport: Sendable {
        /// `DIR/ca/crl.pem`, and the copy in the broker's folder when there is one.
        public let files: [String]
        public let number: Int
        public let thisUpdate: Date
        public let nextUpdate: Date
        public let revokedCount: Int
    }

    /// What a `renew` run did.
    public struct RenewalReport: Sendable {
        public let component: Component
        /// The certificate replaced in the folder; it stays valid until it expires or is revoked.
        public let previous: CertificateIndex.Entry
        public let renewed: CertificateIndex.Entry
        public let keptKey: Bool
        public let notes: [String]
    }

    /// Revokes every certificate named `name` (a component folder or a CN) that is not revoked
    /// yet, or only the one with `serialNumber`, then writes a new revocation list.
    /// - Throws: ``CertificateToolError`` when the folder has no CA, nothing has that name, or
    ///   the serial number is not one of that name's.
    public func revoke(
        _ name: String,
        serialNumber: String? = nil,
        reason: RevocationReason = .unspecified,
        revocationListDays: Int = defaultRevocationListDays,
        now: Date = Date()
    ) throws -> RevocationReport {
        try Self.validate(revocationListDays: revocationListDays)
        guard name != "ca" else {
            throw CertificateToolError("the CA itself cannot be revoked: make a new CA (a new --out folder) and issue every certificate again")
        }
        if let serialNumber, !CertificateIndex.isSerialNumber(serialNumber) {
            throw CertificateToolError("\"\(serialNumber)\" is not a serial number (hex digits, as databus certs list prints them)")
        }
        let authority = try loadAuthority()
        return try withLock {
            var index = try loadIndex(ca: authority.certificate)
            let named = entries(named: name, in: index)
            guard !named.isEmpty else {
                throw CertificateToolError(
                    "no certificate named \"\(name)\" was issued by the CA in \(caFolder) (databus certs list --out \(path) shows them)"
                )
            }
            var chosen = named
            if let serialNumber {
                let wanted = CertificateIndex.normalizedSerial(serialNumber)
                chosen = named.filter { CertificateIndex.normalizedSerial($0.serialNumber) == wanted }
                guard !chosen.isEmpty else {
                    let known = index.entry(serialNumber: serialNumber).map { " (it is \($0.subject)'s)" } ?? ""
                    throw CertificateToolError("\"\(name)\" has no certificate with serial \(serialNumber)\(known)")
                }
            }
            var revoked: [CertificateIndex.Entry] = []
            var already: [CertificateIndex.Entry] = []
            for entry in chosen {
                if index.revoke(serialNumber: entry.serialNumber, at: now, reason: reason) {
                    revoked.append(index.entry(serialNumber: entry.serialNumber)!)
                } else {
                    already.append(entry)
                }
            }
            try save(index)
            let list = try writeRevocationList(authority: authority, index: index, days: revocationListDays, now: now)
            return RevocationReport(revoked: revoked, alreadyRevoked: already, revocationList: list)
        }
    }

    /// Writes a new revocation list with the certificates revoked so far, current from now for
    /// `days` (`databus certs crl`: run it before the previous list's next update).
    public func issueRevocationList(days: Int = defaultRevocationListDays, now: Date = Date()) throws -> RevocationListReport {
        try Self.validate(revocationListDays: days)
        let authority = try loadAuthority()
        return try withLock {
            let index = try loadIndex(ca: authority.certificate)
            return try writeRevocationList(authority: authority, index: index, days: days, now: now)
        }
    }

    /// Issues a new certificate for the component `name` with the same CN, usage and names
    /// (and key type), with a new key unless `keepKey`. The previous certificate is not
    /// revoked: a device keeps working with it until it gets the new folder.
    public func renew(_ name: String, keepKey: Bool = false, days: Int? = nil, now: Date = Date()) throws -> RenewalReport {
        let validity = days ?? CertificateRequest.defaultDays
        guard (1...36_500).contains(validity) else { throw CertificateToolError("days must be between 1 and 36500") }
        let authority = try loadAuthority()
        guard authority.certificate.notValidAfter > now else {
            throw CertificateToolError("the CA in \(caFolder) expired on \(Self.day(authority.certificate.notValidAfter)): make a new CA")
        }
        let component = Component(name: name, folder: path + "/" + name, created: true)
        guard name != "ca", FileManager.default.fileExists(atPath: component.certificate) else {
            throw CertificateToolError(
                "no component \"\(name)\" in \(path) (a folder \(component.folder) with \(name).crt); databus certs list --out \(path) shows the certificates"
            )
        }
        return try withLock {
            let previous: Certificate
            do {
                previous = try Certificate(pemEncoded: try read(component.certificate))
            } catch {
                throw CertificateToolError("\(component.certificate): not a PEM certificate: \(error)")
            }
            guard Self.isIssued(previous, by: authority.certificate) else {
                throw CertificateToolError("\(component.certificate) was not issued by the CA in \(caFolder)")
            }
            var index = try loadIndex(ca: authority.certificate)
            let previousEntry = index.entry(serialNumber: CertificateIndex.serialText(previous.serialNumber.bytes)) ?? Self.indexEntry(previous)
            if keepKey, previousEntry.revocation?.reason == .keyCompromise || previousEntry.revocation?.reason == .caCompromise {
                throw CertificateToolError("\(name)'s certificate was revoked because its key was compromised: renew it without --keep-key")
            }
            let key: Certificate.PrivateKey
            if keepKey {
                do {
                    key = try Certificate.PrivateKey(pemEncoded: try read(component.privateKey))
                } catch {
                    throw CertificateToolError("\(component.privateKey): not a PEM private key without passphrase: \(error)")
                }
                guard key.publicKey == previous.publicKey else {
                    throw CertificateToolError("\(component.privateKey) does not belong to \(component.certificate)")
                }
            } else {
                key = CertificateAuthority.generateKey(try Self.keyType(of: previous.publicKey))
            }
            guard let commonName = ClientCertificateIdentity(certificate: previous).commonName else {
                throw CertificateToolError("\(component.certificate) has no CN to issue again")
            }
            let renewed = try authority.issue(
                commonName: commonName,
                purpose: Self.purpose(of: previous),
                privateKey: key,
                days: validity,
                now: now
            )
            var notes: [String] = []
            // Certificates count whole seconds: a minute's slack for the fraction dropped.
            if renewed.notValidAfter < now.addingTimeInterval(Double(validity) * 86_400 - 60) {
                notes.append("the CA expires on \(Self.day(authority.certificate.notValidAfter)): the new certificate ends then too")
            }
            try record(renewed, in: &index)
            // Key first: a broker reloading in between finds the old certificate with the new key
            // and keeps its previous files (logged), never a certificate it cannot use.
            if !keepKey { try Self.replace(component.privateKey, try key.serializeAsPEM().pemString + "\n", mode: 0o600) }
            try Self.replace(component.certificate, try renewed.serializeAsPEM().pemString + "\n", mode: 0o644)
            try Self.replace(component.caCertificate, try authority.certificate.serializeAsPEM().pemString + "\n", mode: 0o644)
            return RenewalReport(
                component: component,
                previous: previousEntry,
                renewed: Self.indexEntry(renewed),
                keptKey: keepKey,
                notes: notes
            )
        }
    }

    // MARK: Helpers

    /// The index entries of `name`: certificates whose CN is `name`, or the CN of the
    /// certificate in the component folder `name` (`broker` names the broker's host name).
    func entries(named name: String, in index: CertificateIndex) -> [CertificateIndex.Entry] {
        var names: Set<String> = [name]
        if let certificate = componentCertificate(name), let commonName = ClientCertificateIdentity(certificate: certificate).commonName {
            names.insert(commonName)
        }
        return index.entries.filter { names.contains($0.commonName) }
    }

    private func writeRevocationList(
        authority: CertificateAuthority,
        index: CertificateIndex,
        days: Int,
        now: Date
    ) throws -> RevocationListReport {
        let number = (try? read(revocationListNumberFile)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16) } ?? 1
        // Back-dated a little, as certificates are, so a broker whose clock is a few seconds
        // behind does not refuse the list as not yet valid (and with it every client).
        let thisUpdate = now.addingTimeInterval(-300)
        let nextUpdate = min(now.addingTimeInterval(Double(days) * 86_400), authority.certificate.notValidAfter)
        let revoked = index.revoked.map { entry in
            RevocationListBuilder.Revoked(
                serialNumber: Self.bytes(hex: entry.serialNumber),
                date: entry.revocation!.date,
                reason: entry.revocation!.reason
            )
        }
        let pem = try RevocationListBuilder(revoked: revoked, thisUpdate: thisUpdate, nextUpdate: nextUpdate, number: number)
            .pem(signedBy: authority)
        var files = [revocationListFile]
        try Self.replace(revocationListFile, pem, mode: 0o644)
        let broker = brokerComponent()
        if FileManager.default.fileExists(atPath: broker.folder) {
            let copy = broker.folder + "/crl.pem"
            try Self.replace(copy, pem, mode: 0o644)
            files.append(copy)
        }
        var next = String(number + 1, radix: 16, uppercase: true)
        if next.count % 2 == 1 { next = "0" + next }
        try Self.replace(revocationListNumberFile, next + "\n", mode: 0o644)
        return RevocationListReport(files: files, number: number, thisUpdate: thisUpdate, nextUpdate: nextUpdate, revokedCount: revoked.count)
    }

    static func validate(revocationListDays days: Int) throws(CertificateToolError) {
        guard (1...3650).contains(days) else { throw CertificateToolError("the revocation list's validity must be between 1 and 3650 days") }
    }

    static func bytes(hex: String) -> [UInt8] {
        var digits = Array(hex.filter(CertificateIndex.isASCIIHexDigit))
        if digits.count % 2 == 1 { digits.insert("0", at: 0) }
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    private static func keyType(of key: Certificate.PublicKey) throws(CertificateToolError) -> CertificateKeyType {
        if P256.Signing.PublicKey(key) != nil { return .ecdsaP256 }
        if _RSA.Signing.PublicKey(key) != nil { return .rsa2048 }
        throw CertificateToolError("the certificate's key type cannot be issued again (ECDSA P-256 or RSA only); use --keep-key")
    }

    /// Server (with its DNS and IP names) or client, as the certificate was issued.
    private static func purpose(of certificate: Certificate) -> CertificateAuthority.Purpose {
        let usages = (try? certificate.extensions.extendedKeyUsage).map { Array($0) } ?? []
        guard usages.contains(.serverAuth) else { return .client }
        var hosts: [String] = []
        var ips: [String] = []
        for name in (try? certificate.extensions.subjectAlternativeNames) ?? SubjectAlternativeNames() {
            switch name {
            case .dnsName(let host): hosts.append(host)
            case .ipAddress(let bytes): ips.append(CertificateSummary.address(Array(bytes.bytes)))
            default: break
            }
        }
        return .server(hosts: hosts, ips: ips)
    }
}

import Foundation
import MQTTBroker
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The folder `databus certs create --out DIR` fills: a CA and one folder per component,
/// each ready to copy to the machine that runs it.
///
/// ```
/// DIR/ca/ca.crt, ca.key                        the CA (keep ca.key on the machine that issues)
/// DIR/ca/index.txt, issued/SERIAL.pem          every certificate issued, revoked or not (OpenSSL's `openssl ca` format)
/// DIR/ca/crl.pem                               the revocation list, after the first `revoke` or `crl`
/// DIR/broker/ca.crt, broker.crt, broker.key    the broker
/// DIR/NAME/ca.crt, NAME.crt, NAME.key          each client component (--client NAME)
/// ```
///
/// An existing CA is reused, and an existing component folder is kept as it is: nothing
/// that exists is ever overwritten. Private keys are written with mode 0600, the CA's folder
/// with 0700.
public struct CertificateDirectory: Sendable {
    public let path: String

    public init(path: String) {
        self.path = URL(fileURLWithPath: path).standardizedFileURL.path
    }

    public var caFolder: String { path + "/ca" }
    public var caCertificate: String { caFolder + "/ca.crt" }
    public var caKey: String { caFolder + "/ca.key" }

    /// The files of one component folder.
    public struct Component: Sendable, Hashable {
        public let name: String
        public let folder: String
        public var caCertificate: String { folder + "/ca.crt" }
        public var certificate: String { folder + "/\(name).crt" }
        public var privateKey: String { folder + "/\(name).key" }
        /// Whether this run issued it (false: the folder existed and was kept).
        public let created: Bool
    }

    /// What a `create` run did.
    public struct Report: Sendable {
        public let directory: CertificateDirectory
        /// Whether this run made the CA (false: an existing one was reused).
        public let createdCA: Bool
        public let caSubject: String
        public let broker: Component
        public let clients: [Component]
        /// Things the user should know (kept folders, shortened validity).
        public let notes: [String]
    }

    /// The broker's folder.
    public func brokerComponent(created: Bool = false) -> Component {
        Component(name: "broker", folder: path + "/broker", created: created)
    }

    /// Creates or reuses the CA, then issues the broker certificate and one per client that
    /// does not have a folder yet.
    public func create(_ request: CertificateRequest, now: Date = Date()) throws -> Report {
        try Self.validate(request)
        try makeFolder(path, mode: 0o755)
        var notes: [String] = []

        let authority: CertificateAuthority
        let createdCA: Bool
        let fileManager = FileManager.default
        switch (fileManager.fileExists(atPath: caCertificate), fileManager.fileExists(atPath: caKey)) {
        case (true, true):
            authority = try CertificateAuthority(certificatePEM: try read(caCertificate), keyPEM: try read(caKey))
            createdCA = false
            if authority.certificate.notValidAfter < now {
                throw CertificateToolError(
                    "the CA in \(caFolder) expired on \(authority.certificate.notValidAfter); move the folder away to start a new CA"
                )
            }
        case (false, false):
            authority = try CertificateAuthority.create(keyType: request.keyType, days: max(3650, request.validityDays), now: now)
            try makeFolder(caFolder, mode: 0o700)
            try Self.writeNew(caKey, try authority.privateKey.serializeAsPEM().pemString + "\n", mode: 0o600)
            try Self.writeNew(caCertificate, try authority.certificate.serializeAsPEM().pemString + "\n", mode: 0o644)
            createdCA = true
        default:
            throw CertificateToolError("\(caFolder) holds only one of ca.crt and ca.key; both are needed to reuse the CA")
        }
        if authority.certificate.notValidAfter < now.addingTimeInterval(Double(request.validityDays) * 86_400) {
            notes.append("the CA expires on \(Self.day(authority.certificate.notValidAfter)): certificates issued now end then too")
        }

        let (broker, clients) = try withLock { () throws -> (Component, [Component]) in
            var index = try loadIndex(ca: authority.certificate)
            let broker = try issue(
                brokerComponent(),
                commonName: request.brokerHosts.first ?? request.brokerIPs.first ?? "databus broker",
                purpose: .server(hosts: request.brokerHosts, ips: request.brokerIPs),
                request: request,
                authority: authority,
                index: &index,
                now: now,
                notes: &notes
            )
            var clients: [Component] = []
            for name in request.clients {
                let component = Component(name: name, folder: path + "/" + name, created: false)
                clients.append(
                    try issue(
                        component,
                        commonName: name,
                        purpose: .client,
                        request: request,
                        authority: authority,
                        index: &index,
                        now: now,
                        notes: &notes
                    )
                )
            }
            return (broker, clients)
        }
        return Report(
            directory: self,
            createdCA: createdCA,
            caSubject: ClientCertificateIdentity.rfc2253(authority.certificate.subject),
            broker: broker,
            clients: clients,
            notes: notes
        )
    }

    func issue(
        _ component: Component,
        commonName: String,
        purpose: CertificateAuthority.Purpose,
        request: CertificateRequest,
        authority: CertificateAuthority,
        index: inout CertificateIndex,
        now: Date,
        notes: inout [String]
    ) throws -> Component {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: component.folder) {
            let complete = [component.certificate, component.privateKey, component.caCertificate].allSatisfy(fileManager.fileExists(atPath:))
            guard complete else {
                throw CertificateToolError(
                    "\(component.folder) exists but lacks \(component.name).crt, \(component.name).key or ca.crt; remove it to issue \(component.name) again"
                )
            }
            if case .server = purpose, request.hosts.count + request.ips.count > 0 {
                notes.append("\(component.folder) exists and was kept: remove it to issue a broker certificate for the names given")
            } else {
                notes.append("\(component.folder) exists and was kept")
            }
            return Component(name: component.name, folder: component.folder, created: false)
        }
        let (certificate, key) = try authority.issue(
            commonName: commonName,
            purpose: purpose,
            keyType: request.keyType,
            days: request.validityDays,
            now: now
        )
        try makeFolder(component.folder, mode: 0o755)
        try Self.writeNew(component.privateKey, try key.serializeAsPEM().pemString + "\n", mode: 0o600)
        try Self.writeNew(component.certificate, try certificate.serializeAsPEM().pemString + "\n", mode: 0o644)
        try Self.writeNew(component.caCertificate, try authority.certificate.serializeAsPEM().pemString + "\n", mode: 0o644)
        try record(certificate, in: &index)
        return Component(name: component.name, folder: component.folder, created: true)
    }

    // MARK: Checks

    static func validate(_ request: CertificateRequest) throws(CertificateToolError) {
        guard (1...36_500).contains(request.validityDays) else { throw CertificateToolError("days must be between 1 and 36500") }
        for host in request.brokerHosts {
            let allowed = host.unicodeScalars.allSatisfy {
                $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-.*".unicodeScalars.contains($0))
            }
            guard !host.isEmpty, allowed else {
                throw CertificateToolError("\"\(host)\" is not a DNS name (letters, digits, '-', '.', and '*' for a wildcard)")
            }
        }
        for ip in request.brokerIPs {
            do { _ = try CertificateAuthority.addressBytes(ip) } catch { throw CertificateToolError("\"\(ip)\" is not an IPv4 or IPv6 address") }
        }
        var seen = Set<String>()
        for name in request.clients {
            let allowed = name.unicodeScalars.allSatisfy {
                $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0))
            }
            guard !name.isEmpty, allowed, !name.hasPrefix(".") else {
                throw CertificateToolError("client name \"\(name)\" must be letters, digits, '-', '_' or '.' (it names a folder and the CN)")
            }
            guard name != "ca", name != "broker" else {
                throw CertificateToolError("client name \"\(name)\" is taken by the \(name) folder")
            }
            guard seen.insert(name).inserted else { throw CertificateToolError("client \"\(name)\" is named twice") }
        }
    }

    static func day(_ date: Date) -> String {
        String(date.ISO8601Format().prefix(10))
    }
}

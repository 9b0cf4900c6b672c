import Crypto
import Foundation
import MQTTBroker
import SwiftASN1
import X509

/// The CA folder's record of what it issued: `DIR/ca/index.txt` (OpenSSL's format) and a copy
/// of every certificate in `DIR/ca/issued/SERIAL.pem`.
extension CertificateDirectory {
    /// Every certificate issued and which are revoked (``CertificateIndex``).
    public var indexFile: String { caFolder + "/index.txt" }
    /// A copy of each issued certificate, named by its serial number.
    public var issuedFolder: String { caFolder + "/issued" }
    /// The CA's current certificate revocation list.
    public var revocationListFile: String { caFolder + "/crl.pem" }
    /// The next CRL number, in hex (OpenSSL's `crlnumber` file).
    var revocationListNumberFile: String { caFolder + "/crlnumber" }

    /// The CA with its key, to issue or sign.
    func loadAuthority() throws -> CertificateAuthority {
        try requireCA(needsKey: true)
        return try CertificateAuthority(certificatePEM: try read(caCertificate), keyPEM: try read(caKey))
    }

    /// The CA certificate alone (listing needs no key).
    func loadCACertificate() throws -> Certificate {
        try requireCA(needsKey: false)
        do {
            return try Certificate(pemEncoded: try read(caCertificate))
        } catch let error as CertificateToolError {
            throw error
        } catch {
            throw CertificateToolError("\(caCertificate): not a PEM certificate: \(error)")
        }
    }

    private func requireCA(needsKey: Bool) throws(CertificateToolError) {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CertificateToolError("\(path) is not a folder made by databus certs create")
        }
        guard manager.fileExists(atPath: caCertificate) else {
            throw CertificateToolError("\(path) has no CA (\(caCertificate) is missing); databus certs create --out \(path) makes one")
        }
        if needsKey, !manager.fileExists(atPath: caKey) {
            throw CertificateToolError("\(caKey) is missing: certificates can only be issued or revoked where the CA key is")
        }
    }

    /// The index, with any certificate of this CA found in a component folder but not listed
    /// yet added (folders made before the index existed, or by hand).
    func loadIndex(ca: Certificate) throws -> CertificateIndex {
        var index: CertificateIndex
        if FileManager.default.fileExists(atPath: indexFile) {
            index = try CertificateIndex(parsing: try read(indexFile), file: indexFile)
        } else {
            index = CertificateIndex()
        }
        let before = index
        for certificate in componentCertificates(issuedBy: ca) {
            index.add(Self.indexEntry(certificate))
            try keepCopy(certificate)
        }
        if index != before || !FileManager.default.fileExists(atPath: indexFile) { try save(index) }
        return index
    }

    func save(_ index: CertificateIndex) throws {
        try Self.replace(indexFile, index.text(), mode: 0o644)
        // `openssl ca` refuses two valid certificates with one subject unless told otherwise;
        // a renewed certificate is exactly that.
        let attributes = caFolder + "/index.txt.attr"
        if !FileManager.default.fileExists(atPath: attributes) { try Self.replace(attributes, "unique_subject = no\n", mode: 0o644) }
    }

    /// Adds a newly issued certificate to the index and keeps a copy of it.
    func record(_ certificate: Certificate, in index: inout CertificateIndex) throws {
        index.add(Self.indexEntry(certificate))
        try keepCopy(certificate)
        try save(index)
    }

    private func keepCopy(_ certificate: Certificate) throws {
        try makeFolder(issuedFolder, mode: 0o700)
        let file = issuedFolder + "/\(CertificateIndex.serialText(certificate.serialNumber.bytes)).pem"
        guard !FileManager.default.fileExists(atPath: file) else { return }
        try Self.writeNew(file, try certificate.serializeAsPEM().pemString + "\n", mode: 0o644)
    }

    /// The copy of an issued certificate, if one was kept.
    func issuedCertificate(serialNumber: String) -> Certificate? {
        let file = issuedFolder + "/\(serialNumber).pem"
        guard let text = try? read(file) else { return nil }
        return try? Certificate(pemEncoded: text)
    }

    /// `DIR/NAME/NAME.crt` of every component folder, when this CA signed it.
    private func componentCertificates(issuedBy ca: Certificate) -> [Certificate] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        return names.compactMap { name -> Certificate? in
            guard name != "ca", let certificate = componentCertificate(name) else { return nil }
            return Self.isIssued(certificate, by: ca) ? certificate : nil
        }
    }

    /// The certificate in the component folder `name`, if there is one.
    func componentCertificate(_ name: String) -> Certificate? {
        let component = Component(name: name, folder: path + "/" + name, created: false)
        guard let text = try? read(component.certificate) else { return nil }
        return try? Certificate(pemEncoded: text)
    }

    static func isIssued(_ certificate: Certificate, by ca: Certificate) -> Bool {
        certificate.issuer == ca.subject && ca.publicKey.isValidSignature(certificate.signature, for: certificate)
    }

    static func indexEntry(_ certificate: Certificate) -> CertificateIndex.Entry {
        CertificateIndex.Entry(
            serialNumber: CertificateIndex.serialText(certificate.serialNumber.bytes),
            subject: oneLine(certificate.subject),
            notValidAfter: certificate.notValidAfter,
            revocation: nil
        )
    }

    /// `name` as OpenSSL's `X509_NAME_oneline` writes it (`/O=Databus/CN=camera-12`), the
    /// form of its index.
    static func oneLine(_ name: DistinguishedName) -> String {
        let shortNames: [ASN1ObjectIdentifier: String] = [
            [2, 5, 4, 3]: "CN", [2, 5, 4, 6]: "C", [2, 5, 4, 7]: "L", [2, 5, 4, 8]: "ST", [2, 5, 4, 10]: "O", [2, 5, 4, 11]: "OU",
        ]
        return name.map { rdn in
            "/"
                + rdn.map { attribute in
                    "\(shortNames[attribute.type] ?? attribute.type.description)=\(String(attribute.value) ?? attribute.value.description)"
                }.joined(separator: "+")
        }.joined()
    }
}

import Crypto
import Foundation
import MQTTBroker
import SwiftASN1
import X509
import _CryptoExtras

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What `databus certs show` prints about one certificate.
public struct CertificateSummary: Sendable, Hashable {
    /// As `use_subject_as_username` sees it (RFC 2253, as OpenSSL prints it).
    public let subject: String
    public let issuer: String
    /// Hex bytes separated by `:`, as `openssl x509 -serial` groups them.
    public let serialNumber: String
    public let notValidBefore: Date
    public let notValidAfter: Date
    /// `ECDSA P-256`, `RSA 2048`, ...
    public let keyType: String
    /// `DNS:name` and `IP:address` entries.
    public let subjectAlternativeNames: [String]
    public let isCertificateAuthority: Bool
    public let keyUsage: String?
    public let extendedKeyUsage: String?
    /// SHA-256 of the DER, hex with `:`.
    public let sha256Fingerprint: String

    public init(_ certificate: Certificate) {
        subject = ClientCertificateIdentity.rfc2253(certificate.subject)
        issuer = ClientCertificateIdentity.rfc2253(certificate.issuer)
        let serial = Array(certificate.serialNumber.bytes.drop(while: { $0 == 0 }))
        serialNumber = Self.hex(serial.isEmpty ? [0] : serial)
        notValidBefore = certificate.notValidBefore
        notValidAfter = certificate.notValidAfter
        keyType = Self.keyType(certificate.publicKey)
        var names: [String] = []
        for name in (try? certificate.extensions.subjectAlternativeNames) ?? SubjectAlternativeNames() {
            switch name {
            case .dnsName(let host): names.append("DNS:\(host)")
            case .ipAddress(let bytes): names.append("IP:\(Self.address(Array(bytes.bytes)))")
            case .rfc822Name(let mail): names.append("email:\(mail)")
            case .uniformResourceIdentifier(let uri): names.append("URI:\(uri)")
            default: names.append("\(name)")
            }
        }
        subjectAlternativeNames = names
        if case .some(.isCertificateAuthority) = try? certificate.extensions.basicConstraints {
            isCertificateAuthority = true
        } else {
            isCertificateAuthority = false
        }
        keyUsage = (try? certificate.extensions.keyUsage)?.map { "\($0)" }
        extendedKeyUsage = (try? certificate.extensions.extendedKeyUsage)?.map { usage in usage.map { "\($0)" }.joined(separator: ", ") }
        var serializer = DER.Serializer()
        let der = (try? serializer.serialize(certificate)).map { serializer.serializedBytes } ?? []
        sha256Fingerprint = Self.hex(Array(SHA256.hash(data: der)))
    }

    /// Every certificate in a PEM file (a chain or a CA bundle gives several).
    public static func read(file path: String) throws(CertificateToolError) -> [CertificateSummary] {
        guard let data = FileManager.default.contents(atPath: path) else { throw CertificateToolError("\(path): cannot read the file") }
        let text = String(decoding: data, as: UTF8.self)
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "CERTIFICATE" }
        } catch {
            throw CertificateToolError("\(path): not a PEM file (\(error))")
        }
        guard !documents.isEmpty else {
            throw CertificateToolError("\(path): no CERTIFICATE in the file (a key or a request is not shown)")
        }
        do {
            return try documents.map { CertificateSummary(try Certificate(derEncoded: $0.derBytes)) }
        } catch {
            throw CertificateToolError("\(path): a certificate that cannot be read: \(error)")
        }
    }

    /// The lines `databus certs show` prints.
    public func text(now: Date = Date()) -> String {
        let status: String
        if now < notValidBefore {
            status = "NOT YET VALID"
        } else if now > notValidAfter {
            status = "EXPIRED"
        } else {
            status = "valid, \(Int(notValidAfter.timeIntervalSince(now) / 86_400)) days left"
        }
        var lines = [
            "Subject:     \(subject)",
            "Issuer:      \(issuer)",
            "Serial:      \(serialNumber)",
            "Valid from:  \(notValidBefore.ISO8601Format())",
            "Valid until: \(notValidAfter.ISO8601Format()) (\(status))",
            "Key:         \(keyType)",
            "SANs:        \(subjectAlternativeNames.isEmpty ? "none" : subjectAlternativeNames.joined(separator: ", "))",
            "CA:          \(isCertificateAuthority ? "yes" : "no")",
        ]
        if let keyUsage { lines.append("Key usage:   \(keyUsage)") }
        if let extendedKeyUsage { lines.append("Ext. usage:  \(extendedKeyUsage)") }
        lines.append("SHA-256:     \(sha256Fingerprint)")
        return lines.joined(separator: "\n")
    }

    private static func keyType(_ key: Certificate.PublicKey) -> String {
        if P256.Signing.PublicKey(key) != nil { return "ECDSA P-256" }
        if P384.Signing.PublicKey(key) != nil { return "ECDSA P-384" }
        if P521.Signing.PublicKey(key) != nil { return "ECDSA P-521" }
        if let rsa = _RSA.Signing.PublicKey(key) { return "RSA \(rsa.keySizeInBits)" }
        if Curve25519.Signing.PublicKey(key) != nil { return "Ed25519" }
        return "unknown"
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02X", $0) }.joined(separator: ":")
    }

    static func address(_ bytes: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : bytes.count == 16 ? AF_INET6 : -1
        guard family >= 0, bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }) != nil else {
            return bytes.map { String($0) }.joined(separator: ".")
        }
        return String(cString: text)
    }
}

import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// A certificate authority of one's own: its certificate and private key, issuing broker and
/// client certificates with the extensions TLS peers (OpenSSL, mosquitto, BoringSSL) expect.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    let privateKey: Certificate.PrivateKey

    /// A new self-signed CA valid for `days` from `now`.
    ///
    /// Its name carries a random suffix, so that two CAs made with this tool never share a
    /// subject (TLS stacks find a certificate's issuer by name).
    public static func create(keyType: CertificateKeyType, days: Int, now: Date = Date()) throws -> CertificateAuthority {
        let key = generateKey(keyType)
        let suffix = (0..<4).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let name = try DistinguishedName {
            OrganizationName("Databus")
            CommonName("Databus CA \(suffix)")
        }
        let identifier = SubjectKeyIdentifier(hash: key.publicKey)
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            identifier
            AuthorityKeyIdentifier(keyIdentifier: identifier.keyIdentifier)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: signatureAlgorithm(for: key),
            extensions: extensions,
            issuerPrivateKey: key
        )
        return CertificateAuthority(certificate: certificate, privateKey: key)
    }

    /// An existing CA from its PEM certificate and key.
    public init(certificatePEM: String, keyPEM: String) throws(CertificateToolError) {
        do {
            self.certificate = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw CertificateToolError("the CA certificate is not a PEM certificate: \(error)")
        }
        do {
            self.privateKey = try Certificate.PrivateKey(pemEncoded: keyPEM)
        } catch {
            throw CertificateToolError("the CA key is not a PEM private key without passphrase: \(error)")
        }
        guard privateKey.publicKey == certificate.publicKey else {
            throw CertificateToolError("the CA key does not belong to the CA certificate")
        }
        guard case .some(.isCertificateAuthority) = try? certificate.extensions.basicConstraints else {
            throw CertificateToolError("the CA certificate is not a CA (basicConstraints CA:true is missing)")
        }
    }

    init(certificate: Certificate, privateKey: Certificate.PrivateKey) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// What an issued certificate is for.
    public enum Purpose: Sendable, Hashable {
        /// A broker: TLS server authentication, with these DNS names and IP addresses.
        case server(hosts: [String], ips: [String])
        /// A client: TLS client authentication.
        case client
    }

    /// Issues a certificate with a fresh key, named `commonName`, valid for `days` from `now`
    /// but never beyond the CA's own expiry.
    public func issue(
        commonName: String,
        purpose: Purpose,
        keyType: CertificateKeyType,
        days: Int,
        now: Date = Date()
    ) throws -> (certificate: Certificate, privateKey: Certificate.PrivateKey) {
        let key = Self.generateKey(keyType)
        return (try issue(commonName: commonName, purpose: purpose, privateKey: key, days: days, now: now), key)
    }

    /// Issues a certificate for an existing key (a renewal that keeps the key), named
    /// `commonName`, valid for `days` from `now` but never beyond the CA's own expiry.
    public func issue(
        commonName: String,
        purpose: Purpose,
        privateKey key: Certificate.PrivateKey,
        days: Int,
        now: Date = Date()
    ) throws -> Certificate {
        let isRSA = _RSA.Signing.PublicKey(key.publicKey) != nil
        let subject = try DistinguishedName { CommonName(commonName) }
        let authorityIdentifier =
            (try? certificate.extensions.subjectKeyIdentifier)?.keyIdentifier
            ?? SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
        var names: [GeneralName] = []
        if case .server(let hosts, let ips) = purpose {
            names += hosts.map { .dnsName($0) }
            names += try ips.map { .ipAddress(ASN1OctetString(contentBytes: try Self.addressBytes($0)[...])) }
        }
        let usage: ExtendedKeyUsage
        switch purpose {
        case .server: usage = try ExtendedKeyUsage([.serverAuth])
        case .client: usage = try ExtendedKeyUsage([.clientAuth])
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: isRSA))
            usage
            SubjectKeyIdentifier(hash: key.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityIdentifier)
            if !names.isEmpty { SubjectAlternativeNames(names) }
        }
        let notAfter = min(now.addingTimeInterval(Double(days) * 86_400), certificate.notValidAfter)
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: notAfter,
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: Self.signatureAlgorithm(for: privateKey),
            extensions: extensions,
            issuerPrivateKey: privateKey
        )
    }

    static func generateKey(_ type: CertificateKeyType) -> Certificate.PrivateKey {
        switch type {
        case .ecdsaP256: return Certificate.PrivateKey(P256.Signing.PrivateKey())
        case .rsa2048:
            // 2048 bits is the size this tool promises; generation cannot fail for it.
            return Certificate.PrivateKey(try! _RSA.Signing.PrivateKey(keySize: .bits2048))
        }
    }

    static func signatureAlgorithm(for key: Certificate.PrivateKey) -> Certificate.SignatureAlgorithm {
        key.supportedSignatureAlgorithms.contains(.ecdsaWithSHA256) ? .ecdsaWithSHA256 : .sha256WithRSAEncryption
    }

    /// The 4 or 16 bytes of an IPv4 or IPv6 address.
    static func addressBytes(_ text: String) throws -> [UInt8] {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        throw CertificateToolError("\"\(text)\" is not an IPv4 or IPv6 address")
    }
}

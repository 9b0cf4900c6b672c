import Foundation
import SwiftASN1
import X509

/// Builds and signs an X.509 v2 certificate revocation list (RFC 5280 section 5) for a
/// ``CertificateAuthority``: what `databus certs revoke` and `databus certs crl` write to
/// `DIR/ca/crl.pem`, and what a broker's `crlfile` reads (ours, mosquitto's or any OpenSSL
/// program's).
///
/// ```
/// CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
/// TBSCertList ::= SEQUENCE { version v2, signature, issuer, thisUpdate, nextUpdate,
///     revokedCertificates SEQUENCE OF SEQUENCE { serial, revocationDate, [reasonCode] } OPTIONAL,
///     crlExtensions [0] EXPLICIT { authorityKeyIdentifier, cRLNumber } }
/// ```
public struct RevocationListBuilder: Sendable {
    /// One certificate on the list.
    public struct Revoked: Sendable, Hashable {
        /// The serial number's bytes, big-endian.
        public var serialNumber: [UInt8]
        public var date: Date
        public var reason: RevocationReason

        public init(serialNumber: [UInt8], date: Date, reason: RevocationReason) {
            self.serialNumber = serialNumber
            self.date = date
            self.reason = reason
        }
    }

    public var revoked: [Revoked]
    public var thisUpdate: Date
    public var nextUpdate: Date
    /// The list's sequence number (the `cRLNumber` extension): each new list gets a higher one.
    public var number: Int

    public init(revoked: [Revoked], thisUpdate: Date, nextUpdate: Date, number: Int) {
        self.revoked = revoked
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
        self.number = number
    }

    /// The signed list, DER-encoded.
    public func derBytes(signedBy authority: CertificateAuthority) throws -> [UInt8] {
        let algorithm = CertificateAuthority.signatureAlgorithm(for: authority.privateKey)
        let identifier = try Self.algorithmIdentifier(algorithm)
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)  // v2
            coder.serializeRawBytes(identifier)
            try coder.serialize(authority.certificate.subject)
            try Self.serializeTime(thisUpdate, into: &coder)
            try Self.serializeTime(nextUpdate, into: &coder)
            // RFC 5280: absent, not empty, when nothing is revoked.
            if !revoked.isEmpty {
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    for entry in revoked {
                        try Self.serialize(entry, into: &coder)
                    }
                }
            }
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    if let authorityKey = Self.authorityKeyIdentifier(of: authority.certificate) {
                        try coder.serialize(try Certificate.Extension(authorityKey, critical: false))
                    }
                    var number = DER.Serializer()
                    try number.serialize(self.number)
                    try coder.serialize(Certificate.Extension(oid: [2, 5, 29, 20], critical: false, value: number.serializedBytes[...]))
                }
            }
        }
        let signedBytes = tbs.serializedBytes
        let signature = try authority.privateKey.sign(bytes: signedBytes, signatureAlgorithm: algorithm)
        var list = DER.Serializer()
        try list.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(signedBytes)
            coder.serializeRawBytes(identifier)
            try coder.serialize(ASN1BitString(bytes: signature.rawRepresentation[...]))
        }
        return list.serializedBytes
    }

    /// The signed list as PEM (`-----BEGIN X509 CRL-----`).
    public func pem(signedBy authority: CertificateAuthority) throws -> String {
        PEMDocument(type: "X509 CRL", derBytes: try derBytes(signedBy: authority)).pemString + "\n"
    }

    // MARK: Encoding

    private static func serialize(_ entry: Revoked, into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            let significant = entry.serialNumber.drop(while: { $0 == 0 })
            try coder.serialize(significant.isEmpty ? [0][...] : ArraySlice(significant))
            try serializeTime(entry.date, into: &coder)
            // RFC 5280 5.3.1: leave the reason out rather than say "unspecified".
            if entry.reason != .unspecified {
                // CRLReason ::= ENUMERATED, encoded as an INTEGER with the ENUMERATED tag.
                var reason = DER.Serializer()
                try entry.reason.rawValue.serialize(into: &reason, withIdentifier: .enumerated)
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.serialize(Certificate.Extension(oid: [2, 5, 29, 21], critical: false, value: reason.serializedBytes[...]))
                }
            }
        }
    }

    /// `Time ::= CHOICE { utcTime, generalTime }`: UTCTime through 2049, GeneralizedTime after (RFC 5280 5.1.2.4).
    static func serializeTime(_ date: Date, into coder: inout DER.Serializer) throws {
        let parts = Calendar.utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        guard let year = parts.year, let month = parts.month, let day = parts.day, let hour = parts.hour, let minute = parts.minute,
            let second = parts.second
        else { throw CertificateToolError("a date that cannot be written: \(date)") }
        if (1950..<2050).contains(year) {
            try coder.serialize(try UTCTime(year: year, month: month, day: day, hours: hour, minutes: minute, seconds: second))
        } else {
            try coder.serialize(
                try GeneralizedTime(year: year, month: month, day: day, hours: hour, minutes: minute, seconds: second, fractionalSeconds: 0)
            )
        }
    }

    /// `AlgorithmIdentifier` of the CA's signature: ECDSA with no parameters, RSA with NULL.
    static func algorithmIdentifier(_ algorithm: Certificate.SignatureAlgorithm) throws -> [UInt8] {
        let oid: ASN1ObjectIdentifier
        let withNull: Bool
        switch algorithm {
        case .ecdsaWithSHA256: (oid, withNull) = ([1, 2, 840, 10045, 4, 3, 2], false)
        case .ecdsaWithSHA384: (oid, withNull) = ([1, 2, 840, 10045, 4, 3, 3], false)
        case .ecdsaWithSHA512: (oid, withNull) = ([1, 2, 840, 10045, 4, 3, 4], false)
        case .sha256WithRSAEncryption: (oid, withNull) = ([1, 2, 840, 113_549, 1, 1, 11], true)
        case .sha384WithRSAEncryption: (oid, withNull) = ([1, 2, 840, 113_549, 1, 1, 12], true)
        case .sha512WithRSAEncryption: (oid, withNull) = ([1, 2, 840, 113_549, 1, 1, 13], true)
        default: throw CertificateToolError("the CA's signature algorithm \(algorithm) cannot sign a revocation list here")
        }
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(oid)
            if withNull { try coder.serialize(ASN1Null()) }
        }
        return coder.serializedBytes
    }

    /// The CA's subject key identifier as an authority key identifier, so that verifiers
    /// match the list to the right CA key.
    private static func authorityKeyIdentifier(of certificate: Certificate) -> AuthorityKeyIdentifier? {
        guard let identifier = (try? certificate.extensions.subjectKeyIdentifier)?.keyIdentifier else { return nil }
        return AuthorityKeyIdentifier(keyIdentifier: identifier)
    }
}

import Foundation
import SwiftASN1
import X509

/// One X.509 certificate revocation list (RFC 5280 section 5), as a `crlfile` holds them.
///
/// swift-nio-ssl has no CRL option, so the broker checks a client's verified certificate
/// against these lists itself, as OpenSSL's `X509_V_FLAG_CRL_CHECK` does for mosquitto: the
/// leaf's issuer must have a list that is signed by that issuer and current, and the leaf's
/// serial number must not be on it.
public struct CertificateRevocationList: Sendable {
    /// Who issued (and signed) the list.
    public let issuer: DistinguishedName
    public let thisUpdate: Date
    /// When a newer list is due; a list past it is stale and refused, as OpenSSL does.
    public let nextUpdate: Date?
    /// Serial numbers of revoked certificates, as unsigned big-endian bytes without leading zeros.
    public let revokedSerialNumbers: Set<[UInt8]>
    /// The DER of `tbsCertList`, the part the signature covers.
    private let signedBytes: [UInt8]
    private let signatureAlgorithm: ASN1ObjectIdentifier
    private let signature: [UInt8]

    /// Why a list cannot be used.
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Parses one DER-encoded `CertificateList`.
    public init(derEncoded bytes: [UInt8]) throws {
        let root = try DER.parse(bytes)
        var tbs: ASN1Node?
        var algorithm: ASN1ObjectIdentifier?
        var signature: ASN1BitString?
        try DER.sequence(root, identifier: .sequence) { nodes in
            tbs = nodes.next()
            algorithm = try Self.algorithmIdentifier(&nodes)
            signature = try ASN1BitString(derEncoded: &nodes)
        }
        guard let tbs, let algorithm, let signature else { throw Error("not a certificate revocation list") }
        self.signedBytes = Array(tbs.encodedBytes)
        self.signatureAlgorithm = algorithm
        self.signature = Array(signature.bytes)

        var issuer: DistinguishedName?
        var thisUpdate: Date?
        var nextUpdate: Date?
        var revoked: Set<[UInt8]> = []
        try DER.sequence(tbs, identifier: .sequence) { nodes in
            var fields: [ASN1Node] = []
            while let node = nodes.next() { fields.append(node) }
            var index = 0
            if index < fields.count, fields[index].identifier == .integer { index += 1 }  // version v2
            index += 1  // the signature algorithm, repeated
            guard index + 1 < fields.count else { throw Error("a revocation list without issuer or date") }
            issuer = try DistinguishedName(derEncoded: fields[index])
            thisUpdate = try Self.date(fields[index + 1])
            index += 2
            if index < fields.count, let date = try? Self.date(fields[index]) {
                nextUpdate = date
                index += 1
            }
            if index < fields.count, fields[index].identifier == .sequence {
                for entry in try DER.sequence(of: RevokedEntry.self, identifier: .sequence, rootNode: fields[index]) {
                    revoked.insert(Self.normalized(entry.serialNumber))
                }
                index += 1
            }
            if index < fields.count, fields[index].identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                try Self.checkExtensions(fields[index])
            }
        }
        guard let issuer, let thisUpdate else { throw Error("a revocation list without issuer or date") }
        self.issuer = issuer
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
        self.revokedSerialNumbers = revoked
    }

    /// Every `X509 CRL` block of a PEM file (a file may hold lists of several CAs).
    public static func lists(pem text: String) throws -> [CertificateRevocationList] {
        let documents = try PEMDocument.parseMultiple(pemString: text)
        let lists = try documents.filter { $0.discriminator == "X509 CRL" }.map { try CertificateRevocationList(derEncoded: $0.derBytes) }
        guard !lists.isEmpty else { throw Error("no \"X509 CRL\" block in the file") }
        return lists
    }

    /// Whether `certificate`'s key made the list's signature.
    public func isSigned(by certificate: Certificate) -> Bool {
        guard let algorithm = Self.signatureAlgorithms[signatureAlgorithm] else { return false }
        return certificate.publicKey.isValidSignature(signature, for: signedBytes, signatureAlgorithm: algorithm)
    }

    /// Whether the list names `serialNumber` (a certificate of this list's issuer).
    public func revokes(serialNumber: ArraySlice<UInt8>) -> Bool {
        revokedSerialNumbers.contains(Self.normalized(serialNumber))
    }

    // MARK: Parsing helpers

    private static let signatureAlgorithms: [ASN1ObjectIdentifier: Certificate.SignatureAlgorithm] = [
        [1, 2, 840, 10045, 4, 3, 2]: .ecdsaWithSHA256,
        [1, 2, 840, 10045, 4, 3, 3]: .ecdsaWithSHA384,
        [1, 2, 840, 10045, 4, 3, 4]: .ecdsaWithSHA512,
        [1, 2, 840, 113_549, 1, 1, 5]: .sha1WithRSAEncryption,
        [1, 2, 840, 113_549, 1, 1, 11]: .sha256WithRSAEncryption,
        [1, 2, 840, 113_549, 1, 1, 12]: .sha384WithRSAEncryption,
        [1, 2, 840, 113_549, 1, 1, 13]: .sha512WithRSAEncryption,
        [1, 3, 101, 112]: .ed25519,
    ]

    /// Extensions of the whole list that this checker understands (none of them changes
    /// what "revoked" means): CRL number, authority key identifier, issuer alternative name.
    private static let understoodExtensions: Set<ASN1ObjectIdentifier> = [[2, 5, 29, 20], [2, 5, 29, 35], [2, 5, 29, 18]]

    private static func algorithmIdentifier(_ nodes: inout ASN1NodeCollection.Iterator) throws -> ASN1ObjectIdentifier {
        guard let node = nodes.next() else { throw Error("missing signature algorithm") }
        return try DER.sequence(node, identifier: .sequence) { inner in
            let oid = try ASN1ObjectIdentifier(derEncoded: &inner)
            while inner.next() != nil {}  // parameters (NULL for RSA)
            return oid
        }
    }

    /// A critical extension we do not understand (a delta list, a partial list) would change
    /// which certificates the list covers: refuse the list rather than misread it.
    private static func checkExtensions(_ node: ASN1Node) throws {
        guard case .constructed(let children) = node.content else { return }
        for sequence in children {
            let extensions = try DER.sequence(of: Certificate.Extension.self, identifier: .sequence, rootNode: sequence)
            for item in extensions where item.critical && !understoodExtensions.contains(item.oid) {
                throw Error("the list has a critical extension \(item.oid) that is not supported (delta or partial lists)")
            }
        }
    }

    static func date(_ node: ASN1Node) throws -> Date {
        var components = DateComponents()
        components.timeZone = TimeZone(identifier: "UTC")
        if node.identifier == UTCTime.defaultIdentifier {
            let time = try UTCTime(derEncoded: node)
            (components.year, components.month, components.day) = (time.year, time.month, time.day)
            (components.hour, components.minute, components.second) = (time.hours, time.minutes, time.seconds)
        } else if node.identifier == GeneralizedTime.defaultIdentifier {
            let time = try GeneralizedTime(derEncoded: node)
            (components.year, components.month, components.day) = (time.year, time.month, time.day)
            (components.hour, components.minute, components.second) = (time.hours, time.minutes, time.seconds)
        } else {
            throw Error("a date that is neither UTCTime nor GeneralizedTime")
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: components) else { throw Error("an impossible date") }
        return date
    }

    static func normalized(_ serialNumber: some Collection<UInt8>) -> [UInt8] {
        Array(serialNumber.drop(while: { $0 == 0 }))
    }

    /// One `revokedCertificates` entry: the serial number is all we need.
    private struct RevokedEntry: DERImplicitlyTaggable {
        static var defaultIdentifier: ASN1Identifier { .sequence }
        let serialNumber: ArraySlice<UInt8>

        init(derEncoded node: ASN1Node, withIdentifier identifier: ASN1Identifier) throws {
            serialNumber = try DER.sequence(node, identifier: identifier) { nodes in
                let serial = try ArraySlice<UInt8>(derEncoded: &nodes)
                while nodes.next() != nil {}  // revocation date, entry extensions
                return serial
            }
        }

        func serialize(into coder: inout DER.Serializer, withIdentifier identifier: ASN1Identifier) throws {
            throw Error("revocation entries are only read")
        }
    }
}

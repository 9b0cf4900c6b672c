import NIOCore
import NIOSSL
import SwiftASN1
import X509

extension ClientCertificateIdentity {
    /// The identity a client certificate names: its first CN, and its subject written as
    /// mosquitto's `use_subject_as_username` writes it (OpenSSL's `XN_FLAG_RFC2253`).
    public init(certificate: Certificate) {
        self.init(commonName: Self.commonName(of: certificate.subject), subject: Self.rfc2253(certificate.subject))
    }

    /// The verified client certificate of a TLS connection, if the client sent one.
    ///
    /// A listener asks for client certificates only with `require_certificate true` (as
    /// mosquitto does), and then the handshake has already refused any certificate that
    /// does not verify; so a certificate found here is a verified one.
    static func verifiedPeer(of pipeline: ChannelPipeline.SynchronousOperations) -> ClientCertificateIdentity? {
        guard let handler = try? pipeline.handler(type: NIOSSLServerHandler.self),
            let peer = handler.peerCertificate,
            let certificate = try? Certificate(derEncoded: peer.toDERBytes())
        else { return nil }
        return ClientCertificateIdentity(certificate: certificate)
    }

    /// The value of the first CN attribute, in the order the certificate lists them.
    static func commonName(of name: DistinguishedName) -> String? {
        for rdn in name {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                return AttributeText(attribute.value)?.text
            }
        }
        return nil
    }

    /// `name` as OpenSSL's `X509_NAME_print_ex(..., XN_FLAG_RFC2253)` prints it: the last
    /// RDN first, `,` between RDNs and `+` inside one, OpenSSL's short attribute names,
    /// RFC 2253 escapes, bytes of non-ASCII characters as `\XX`, and unknown attributes as
    /// `OID=#` followed by the hex of their DER.
    public static func rfc2253(_ name: DistinguishedName) -> String {
        name.reversed().map { rdn in
            rdn.reversed().map { attribute in
                let key = shortNames[attribute.type] ?? attribute.type.description
                guard shortNames[attribute.type] != nil, let value = AttributeText(attribute.value) else {
                    return "\(key)=#\(hex(AttributeText.der(attribute.value)))"
                }
                return "\(key)=\(escaped(value.text))"
            }.joined(separator: "+")
        }.joined(separator: ",")
    }

    /// OpenSSL's short names of the attributes certificates use.
    private static let shortNames: [ASN1ObjectIdentifier: String] = [
        [2, 5, 4, 3]: "CN", [2, 5, 4, 4]: "SN", [2, 5, 4, 5]: "serialNumber", [2, 5, 4, 6]: "C", [2, 5, 4, 7]: "L",
        [2, 5, 4, 8]: "ST", [2, 5, 4, 9]: "street", [2, 5, 4, 10]: "O", [2, 5, 4, 11]: "OU", [2, 5, 4, 12]: "title",
        [2, 5, 4, 13]: "description", [2, 5, 4, 15]: "businessCategory", [2, 5, 4, 17]: "postalCode",
        [2, 5, 4, 42]: "GN", [2, 5, 4, 43]: "initials", [2, 5, 4, 44]: "generationQualifier", [2, 5, 4, 46]: "dnQualifier",
        [2, 5, 4, 65]: "pseudonym", [2, 5, 4, 97]: "organizationIdentifier",
        [0, 9, 2342, 19_200_300, 100, 1, 1]: "UID", [0, 9, 2342, 19_200_300, 100, 1, 25]: "DC",
        [1, 2, 840, 113_549, 1, 9, 1]: "emailAddress",
    ]

    private static func escaped(_ text: String) -> String {
        var output = ""
        let scalars = Array(text.unicodeScalars)
        for (index, scalar) in scalars.enumerated() {
            switch scalar.value {
            case 0x80...:
                for byte in String(scalar).utf8 { output += "\\" + hexByte(byte) }
            case 0..<0x20, 0x7F:
                output += "\\" + hexByte(UInt8(scalar.value))
            default:
                let character = Character(scalar)
                let special = ",+\"\\<>;".contains(character)
                let leading = index == 0 && (character == "#" || character == " ")
                let trailing = index == scalars.count - 1 && character == " "
                if special || leading || trailing { output += "\\" }
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }

    private static func hexByte(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }

    private static func hex(_ bytes: [UInt8]) -> String { bytes.map(hexByte).joined() }
}

/// The text of a directory string attribute, decoded as OpenSSL decodes it to UTF-8.
private struct AttributeText {
    let text: String

    init?(_ value: RelativeDistinguishedName.Attribute.Value) {
        guard let node = try? DER.parse(Self.der(value)), case .primitive(let content) = node.content else { return nil }
        let bytes = Array(content)
        switch node.identifier {
        case .utf8String, .printableString, .ia5String, .visibleString, .numericString:
            text = String(decoding: bytes, as: UTF8.self)
        case .teletexString:
            // OpenSSL reads T61String as ISO 8859-1.
            text = String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        case .bmpString:
            guard bytes.count % 2 == 0 else { return nil }
            let units = stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
            text = String(decoding: units, as: UTF16.self)
        case .universalString:
            guard bytes.count % 4 == 0 else { return nil }
            var scalars = String.UnicodeScalarView()
            for offset in stride(from: 0, to: bytes.count, by: 4) {
                let value = bytes[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                guard let scalar = Unicode.Scalar(value) else { return nil }
                scalars.append(scalar)
            }
            text = String(scalars)
        default:
            return nil
        }
    }

    /// The attribute value's DER: tag, length and content.
    static func der(_ value: RelativeDistinguishedName.Attribute.Value) -> [UInt8] {
        var serializer = DER.Serializer()
        guard (try? serializer.serialize(ASN1Any(value))) != nil else { return [] }
        return serializer.serializedBytes
    }
}

/// mosquitto's `use_identity_as_username` and `use_subject_as_username` on a TLS listener.
///
/// - Returns: the username the certificate gives (with `use_identity_as_username` its CN,
///   with `use_subject_as_username` its subject), or why the client is refused (it sent no
///   certificate, or one without a CN); both `nil` when neither option is set, so that
///   other authentication decides.
func certificateUsername(
    for listener: BrokerConfiguration.Listener,
    certificate: ClientCertificateIdentity?
) -> (username: String?, refusal: String?) {
    let tls = listener.tls
    guard tls.isEnabled, tls.useIdentityAsUsername || tls.useSubjectAsUsername else { return (nil, nil) }
    let option = tls.useIdentityAsUsername ? "use_identity_as_username" : "use_subject_as_username"
    guard let certificate else { return (nil, "\(option) is set and the client sent no certificate") }
    // mosquitto gives use_identity_as_username precedence when both are set.
    if tls.useIdentityAsUsername {
        guard let commonName = certificate.commonName, !commonName.isEmpty else {
            return (nil, "\(option) is set and the client certificate (\(certificate.subject)) has no CN")
        }
        return (commonName, nil)
    }
    return (certificate.subject, nil)
}

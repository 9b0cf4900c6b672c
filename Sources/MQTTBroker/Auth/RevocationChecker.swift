import Foundation
import X509

/// A listener's `crlfile`: refuses client certificates that their issuer revoked.
///
/// Behaves as OpenSSL's `X509_V_FLAG_CRL_CHECK`, which mosquitto sets: only the client's own
/// certificate is checked, its issuer must have a list in the file, and that list must be
/// current (between its thisUpdate and nextUpdate). Every list's signature is checked
/// against the listener's CAs when the file is loaded.
struct RevocationChecker: Sendable {
    let lists: [CertificateRevocationList]

    /// Reads `file` (PEM, one or more `X509 CRL` blocks) and checks each list was signed by
    /// one of `authorities`.
    init(file: String, authorities: [Certificate]) throws {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw CertificateRevocationList.Error("cannot read the file: \(error.localizedDescription)")
        }
        let lists = try CertificateRevocationList.lists(pem: text)
        for list in lists {
            let issuers = authorities.filter { $0.subject == list.issuer }
            guard !issuers.isEmpty else {
                throw CertificateRevocationList.Error("the list of \(list.issuer) comes from no CA in cafile/capath")
            }
            guard issuers.contains(where: list.isSigned(by:)) else {
                throw CertificateRevocationList.Error("the list of \(list.issuer) is not signed by that CA's key")
            }
        }
        self.lists = lists
    }

    init(lists: [CertificateRevocationList]) {
        self.lists = lists
    }

    /// Why `certificate` is refused at `now`, or `nil` when it may connect.
    func refusal(for certificate: Certificate, now: Date) -> String? {
        refusal(
            issuer: certificate.issuer,
            serialNumber: Array(certificate.serialNumber.bytes),
            subject: ClientCertificateIdentity.rfc2253(certificate.subject),
            now: now
        )
    }

    /// Why the certificate with `serialNumber` from `issuer` is refused at `now`, or `nil`
    /// when it may connect; `subject` (RFC 2253) is for the reason's text.
    func refusal(issuer: DistinguishedName, serialNumber: [UInt8], subject: String, now: Date) -> String? {
        let candidates = lists.filter { $0.issuer == issuer }
        // With several lists of one issuer, the newest one counts.
        guard let list = candidates.max(by: { $0.thisUpdate < $1.thisUpdate }) else {
            return "crlfile has no revocation list of the certificate's issuer \(ClientCertificateIdentity.rfc2253(issuer))"
        }
        if now < list.thisUpdate {
            return "the revocation list of \(issuer) is not valid before \(list.thisUpdate)"
        }
        if let nextUpdate = list.nextUpdate, nextUpdate < now {
            return "the revocation list of \(issuer) expired at \(nextUpdate)"
        }
        if list.revokes(serialNumber: serialNumber[...]) {
            let serial = CertificateRevocationList.normalized(serialNumber).map { String(format: "%02X", $0) }.joined()
            return "certificate \(subject) (serial \(serial)) is revoked"
        }
        return nil
    }
}

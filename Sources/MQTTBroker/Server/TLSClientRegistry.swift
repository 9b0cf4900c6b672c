import Foundation
import NIOConcurrencyHelpers
import NIOCore
import X509

/// The open connections of one TLS listener whose client certificate verified, with what a
/// revocation list needs to know about that certificate; so that a reload that brings a new
/// `crlfile` can find the clients it revokes and disconnect them.
///
/// A connection is added when its certificate passes verification and removed when it closes.
/// Only issuer, serial number and subject are kept (not the certificate), to keep an idle
/// camera's connection small.
final class TLSClientRegistry: Sendable {
    /// What is kept of one connection's client certificate.
    struct Client: Sendable {
        let channel: any Channel
        let issuer: DistinguishedName
        let serialNumber: [UInt8]
        let subject: String
    }

    private let clients = NIOLockedValueBox<[ObjectIdentifier: Client]>([:])

    /// Tracks `channel`, verified with `certificate`, until it closes.
    func add(_ channel: any Channel, certificate: Certificate) {
        let client = Client(
            channel: channel,
            issuer: certificate.issuer,
            serialNumber: Array(certificate.serialNumber.bytes),
            subject: ClientCertificateIdentity.rfc2253(certificate.subject)
        )
        let key = ObjectIdentifier(channel)
        clients.withLockedValue { $0[key] = client }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.clients.withLockedValue { _ = $0.removeValue(forKey: key) }
        }
    }

    var count: Int { clients.withLockedValue { $0.count } }

    /// The connected clients that `checker` refuses now, each with the reason.
    func refused(by checker: RevocationChecker, now: Date) -> [(client: Client, reason: String)] {
        clients.withLockedValue { Array($0.values) }.compactMap { client in
            checker.refusal(issuer: client.issuer, serialNumber: client.serialNumber, subject: client.subject, now: now).map { (client, $0) }
        }
    }
}

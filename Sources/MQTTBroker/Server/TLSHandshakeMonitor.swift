import Foundation
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import X509

/// Why a TLS handshake failed, as counted in `databus_tls_handshake_failures_total`.
enum TLSHandshakeFailure: String, CaseIterable, Sendable {
    /// The client's certificate did not verify: unknown CA, expired, not yet valid, wrong purpose.
    case certificateInvalid = "certificate_invalid"
    /// `require_certificate true` and the client sent none.
    case certificateMissing = "certificate_missing"
    /// The certificate verified but `crlfile` revokes it (or has no current list for its issuer).
    case certificateRevoked = "certificate_revoked"
    /// The client offered only TLS versions below the listener's `tls_version`.
    case protocolVersion = "protocol_version"
    /// No cipher suite in common (`ciphers`).
    case noSharedCipher = "no_shared_cipher"
    /// The client did not speak TLS at all (plain MQTT or HTTP on a TLS port).
    case notTLS = "not_tls"
    /// The client aborted with an alert, typically because it does not trust our certificate.
    case refusedByClient = "refused_by_client"
    /// The connection closed before the handshake finished (port probes, timeouts).
    case closedEarly = "closed_early"
    case other

    /// Classifies an error raised during the handshake, with the reason text to log.
    static func classify(_ error: any Error) -> (failure: TLSHandshakeFailure, reason: String) {
        if let error = error as? ClientCertificateRevokedError { return (.certificateRevoked, error.reason) }
        guard let error = error as? NIOSSLError else { return (.other, "\(error)") }
        guard case .handshakeFailed(let inner) = error else { return (.other, "\(error)") }
        let reason = reasons(of: inner)
        return (classify(reasonText: reason), reason)
    }

    /// Classifies BoringSSL's reason names (`CERTIFICATE_VERIFY_FAILED`, ...).
    static func classify(reasonText reason: String) -> TLSHandshakeFailure {
        if reason.contains("EOF during") { return .closedEarly }
        if reason.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") { return .certificateMissing }
        if reason.contains("CERTIFICATE_VERIFY_FAILED") { return .certificateInvalid }
        if reason.contains("UNSUPPORTED_PROTOCOL") || reason.contains("ALERT_PROTOCOL_VERSION") { return .protocolVersion }
        if reason.contains("NO_SHARED_CIPHER") || reason.contains("NO_CIPHERS_AVAILABLE") { return .noSharedCipher }
        if reason.contains("WRONG_VERSION_NUMBER") || reason.contains("HTTP_REQUEST") || reason.contains("HTTPS_PROXY_REQUEST")
            || reason.contains("UNKNOWN_PROTOCOL")
        {
            return .notTLS
        }
        if reason.contains("ALERT") { return .refusedByClient }
        return .other
    }

    /// BoringSSL's error stack as its reason names (`CERTIFICATE_VERIFY_FAILED`), without the
    /// numeric codes and source locations.
    static func reasons(of error: BoringSSLError) -> String {
        let stack: NIOBoringSSLErrorStack
        switch error {
        case .sslError(let errors), .unknownError(let errors), .invalidSNIName(let errors), .failedToSetALPN(let errors):
            stack = errors
        default:
            return "\(error)"
        }
        guard !stack.isEmpty else { return "\(error)" }
        return stack.map { reasonName(String(describing: $0)) }.joined(separator: ", ")
    }

    /// `Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at file:line`
    /// becomes `CERTIFICATE_VERIFY_FAILED`.
    static func reasonName(_ description: String) -> String {
        guard let range = description.range(of: "error:") else { return description }
        // code, library, function, then "REASON at file:line"
        let fields = description[range.upperBound...].split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4 else { return description }
        return String(fields[3].split(separator: " ").first ?? fields[3])
    }
}

/// Watches one TLS connection's handshake: a success is counted and timed; a failure is
/// logged in one line with the peer and BoringSSL's reason, counted by reason, and the
/// connection closed. Nothing after the handshake is its business.
final class TLSHandshakeMonitor: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let core: BrokerCore
    private let listener: String
    private var started = NIODeadline.now()
    private enum State { case handshaking, completed, failed }
    private var state = State.handshaking

    /// What BoringSSL's CERTIFICATE_VERIFY_FAILED does not say: whose certificate it was,
    /// and whether it is out of its validity period.
    static func explainRefusedCertificate(_ context: ChannelHandlerContext) -> String? {
        guard let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
            let peer = handler.peerCertificate,
            let certificate = try? Certificate(derEncoded: peer.toDERBytes())
        else { return nil }
        let now = Date()
        var detail =
            "certificate \(ClientCertificateIdentity.rfc2253(certificate.subject)) issued by \(ClientCertificateIdentity.rfc2253(certificate.issuer))"
        if now > certificate.notValidAfter {
            detail += " expired at \(certificate.notValidAfter)"
        } else if now < certificate.notValidBefore {
            detail += " is not valid before \(certificate.notValidBefore)"
        }
        return detail
    }

    init(core: BrokerCore, listener: String) {
        self.core = core
        self.listener = listener
    }

    /// Kept from the start: a failed handshake closes the channel, which forgets its address.
    private var peer = "?"

    func handlerAdded(context: ChannelHandlerContext) {
        started = .now()
        if let address = context.remoteAddress { peer = "\(address)" }
    }

    func channelActive(context: ChannelHandlerContext) {
        if let address = context.remoteAddress { peer = "\(address)" }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if state == .handshaking, let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            state = .completed
            core.statistics.tlsHandshakeSucceeded()
            let elapsed = NIODeadline.now() - started
            core.metrics.tlsHandshakeDuration.recordNanoseconds(elapsed.nanoseconds)
            context.fireUserInboundEventTriggered(event)
            // Nothing after the handshake is its business: out of the way of every later read.
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .completed: return context.fireErrorCaught(error)
        case .failed: return  // one line per connection, however many errors follow
        case .handshaking: state = .failed
        }
        var (failure, reason) = TLSHandshakeFailure.classify(error)
        if failure == .certificateInvalid, let detail = Self.explainRefusedCertificate(context) { reason += " (\(detail))" }
        core.statistics.tlsHandshakeFailed(failure)
        let metadata: Logger.Metadata = [
            "peer": "\(peer)", "listener": "\(listener)", "failure": "\(failure.rawValue)",
        ]
        // Port probes and health checks close without a word: not worth a notice each.
        let level: Logger.Level = failure == .closedEarly ? .debug : .notice
        core.logger.log(level: level, "TLS handshake failed: \(reason)", metadata: metadata)
        context.close(promise: nil)
    }
}

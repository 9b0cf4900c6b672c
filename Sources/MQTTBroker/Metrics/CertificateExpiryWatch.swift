import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Prometheus
import X509

/// When the TLS listeners' own certificates, their CAs and their revocation lists end: a
/// warning in the log when one is close (at start, on every reload and once a day), and
/// `databus_tls_certificate_expiry_seconds{cn,role}` at `/metrics`, the seconds left
/// (negative once passed), computed when scraped.
final class CertificateExpiryWatch: Sendable {
    /// One thing that ends.
    struct Tracked: Hashable, Sendable {
        /// `certificate` (the listener's certfile), `ca` (cafile/capath) or `crl` (crlfile's next update).
        let role: String
        let commonName: String
        let notValidAfter: Date
    }

    /// Certificates and CAs are warned about this long before they end.
    static let certificateWarning: TimeInterval = 30 * 86_400
    /// A revocation list, usually re-issued every few weeks, this long before its next update.
    static let revocationListWarning: TimeInterval = 7 * 86_400

    private let tracked = NIOLockedValueBox<[String: [Tracked]]>([:])
    private let gauges = NIOLockedValueBox<[Tracked: Gauge]>([:])
    private let dailyCheck = NIOLockedValueBox<RepeatedTask?>(nil)

    /// What a listener's files (as just loaded) hold; logs what ends soon.
    func track(listener: String, _ loaded: ListenerTLS.Loaded, logger: Logger, now: Date = Date()) {
        var items: [Tracked] = []
        if let certificate = loaded.certificate {
            items.append(Tracked(role: "certificate", commonName: Self.name(certificate), notValidAfter: certificate.notValidAfter))
        }
        for authority in loaded.authorities {
            items.append(Tracked(role: "ca", commonName: Self.name(authority), notValidAfter: authority.notValidAfter))
        }
        for list in loaded.revocation?.lists ?? [] {
            guard let nextUpdate = list.nextUpdate else { continue }
            let issuer = ClientCertificateIdentity.commonName(of: list.issuer) ?? ClientCertificateIdentity.rfc2253(list.issuer)
            items.append(Tracked(role: "crl", commonName: issuer, notValidAfter: nextUpdate))
        }
        tracked.withLockedValue { $0[listener] = items }
        warn(listener: listener, items, logger: logger, now: now)
    }

    /// Logs, once a day from now on, whatever ends soon.
    func checkDaily(on eventLoop: any EventLoop, logger: Logger) {
        let task = eventLoop.scheduleRepeatedTask(initialDelay: .hours(24), delay: .hours(24)) { [weak self] _ in
            guard let self else { return }
            let now = Date()
            for (listener, items) in self.tracked.withLockedValue({ $0 }) { self.warn(listener: listener, items, logger: logger, now: now) }
        }
        dailyCheck.withLockedValue { previous in
            previous?.cancel()
            previous = task
        }
    }

    func stop() {
        dailyCheck.withLockedValue { task in
            task?.cancel()
            task = nil
        }
    }

    /// Sets the gauges to the seconds left now, and drops those of files no longer in use.
    func export(into registry: PrometheusCollectorRegistry, now: Date = Date()) {
        let current = Set(tracked.withLockedValue { $0.values.flatMap { $0 } })
        gauges.withLockedValue { gauges in
            for (item, gauge) in gauges where !current.contains(item) {
                registry.unregisterGauge(gauge)
                gauges[item] = nil
            }
            for item in current {
                let gauge =
                    gauges[item]
                    ?? registry.makeGauge(
                        name: "databus_tls_certificate_expiry_seconds",
                        labels: [("cn", item.commonName), ("role", item.role)],
                        help: "Seconds until a TLS listener's certificate or CA expires, or its revocation list's next update (negative once passed)"
                    )
                gauges[item] = gauge
                gauge.set(item.notValidAfter.timeIntervalSince(now).rounded(.down))
            }
        }
    }

    private func warn(listener: String, _ items: [Tracked], logger: Logger, now: Date) {
        for item in items {
            let left = item.notValidAfter.timeIntervalSince(now)
            let metadata: Logger.Metadata = [
                "listener": "\(listener)", "cn": "\(item.commonName)", "role": "\(item.role)", "notAfter": "\(item.notValidAfter)",
            ]
            let what: String
            switch item.role {
            case "crl": what = "the revocation list of \(item.commonName)"
            case "ca": what = "the CA certificate \(item.commonName)"
            default: what = "the TLS certificate \(item.commonName)"
            }
            if left <= 0 {
                let consequence = item.role == "crl" ? ": every client certificate is refused until a new list is loaded" : ""
                logger.error("\(what) has expired\(consequence)", metadata: metadata)
            } else if left < (item.role == "crl" ? Self.revocationListWarning : Self.certificateWarning) {
                let days = Int(left / 86_400)
                let action = item.role == "crl" ? "re-issue it (databus certs crl)" : "renew it"
                logger.warning("\(what) expires in \(days) day\(days == 1 ? "" : "s"): \(action) and send SIGHUP", metadata: metadata)
            }
        }
    }

    private static func name(_ certificate: Certificate) -> String {
        ClientCertificateIdentity.commonName(of: certificate.subject) ?? ClientCertificateIdentity.rfc2253(certificate.subject)
    }
}

import ArgumentParser
import DatabusTools
import Foundation

extension RevocationReason: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { allCases.map(\.name) }
    public var defaultValueDescription: String { name }
}

/// Prints `Error: ...` on standard error and exits with `code`.
private func fail(_ error: any Error, code: Int32 = 1) -> ExitCode {
    FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
    return ExitCode(code)
}

private func day(_ date: Date) -> String { String(date.ISO8601Format().prefix(10)) }

extension CertsCommand {
    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a component's certificates (a stolen camera) and write a new revocation list.",
            discussion: """
                Marks every certificate named NAME (a component folder such as camera-12 or broker, \
                or a certificate's CN) as revoked in DIR/ca/index.txt, or only the one with --serial \
                (for example the previous certificate after a renewal), and writes the revocation \
                list signed by the CA to DIR/ca/crl.pem (and a copy to DIR/broker/crl.pem).

                A broker with `crlfile` naming that file (databus broker or mosquitto) refuses the \
                revoked certificate once it re-reads the file: send it SIGHUP. databus broker also \
                disconnects a client that is connected with it. The list is current for \
                --crl-days (default \(CertificateDirectory.defaultRevocationListDays)); before it \
                runs out, re-issue it with `databus certs crl`, or the brokers refuse every client.

                Examples:
                  databus certs revoke --out certs camera-12 --reason keyCompromise
                  databus certs revoke --out certs camera-12 --serial 5F3A09C1... --reason superseded
                """
        )

        @Option(name: .long, help: "The folder made by `databus certs create` (its CA key is needed).")
        var out: String

        @Argument(help: "The component (folder name) or CN whose certificates to revoke.")
        var name: String

        @Option(help: "Revoke only the certificate with this serial number (hex, as `databus certs list` prints it).")
        var serial: String?

        @Option(help: "Why: \(RevocationReason.allValueStrings.joined(separator: ", ")).")
        var reason: RevocationReason = .unspecified

        @Option(name: .customLong("crl-days"), help: "How long the new revocation list stays current, in days.")
        var crlDays = CertificateDirectory.defaultRevocationListDays

        func run() throws {
            let report: CertificateDirectory.RevocationReport
            do {
                report = try CertificateDirectory(path: out).revoke(name, serialNumber: serial, reason: reason, revocationListDays: crlDays)
            } catch {
                throw fail(error)
            }
            var lines: [String] = []
            for entry in report.revoked {
                lines.append("Revoked \(entry.commonName), serial \(entry.serialNumber)" + (reason == .unspecified ? "" : " (\(reason.name))"))
            }
            for entry in report.alreadyRevoked {
                lines.append("Already revoked: \(entry.commonName), serial \(entry.serialNumber)")
            }
            lines.append(Self.describe(report.revocationList))
            print(lines.joined(separator: "\n"))
        }

        static func describe(_ list: CertificateDirectory.RevocationListReport) -> String {
            """
            Wrote the revocation list \(list.files.joined(separator: " and ")): number \(list.number), \(list.revokedCount) revoked, \
            next update \(day(list.nextUpdate)).
            Copy it to each broker (mosquitto.conf: crlfile /path/to/crl.pem) and send the broker SIGHUP.
            Re-issue it before \(day(list.nextUpdate)) (databus certs crl), or brokers with crlfile refuse every client.
            """
        }
    }

    struct RevocationList: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crl",
            abstract: "Re-issue the CA's revocation list before it expires.",
            discussion: """
                Writes DIR/ca/crl.pem (and DIR/broker/crl.pem) again with every certificate revoked \
                so far, current from now for --crl-days. Brokers treat a list past its next update \
                as OpenSSL does: every client certificate is refused. Run it regularly, for example \
                monthly from cron, then copy the file to the brokers and send them SIGHUP.

                Example:
                  databus certs crl --out certs
                """
        )

        @Option(name: .long, help: "The folder made by `databus certs create` (its CA key is needed).")
        var out: String

        @Option(name: .customLong("crl-days"), help: "How long the list stays current, in days.")
        var crlDays = CertificateDirectory.defaultRevocationListDays

        func run() throws {
            do {
                let list = try CertificateDirectory(path: out).issueRevocationList(days: crlDays)
                print(Revoke.describe(list))
            } catch {
                throw fail(error)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List every certificate the CA issued, with its expiry; exit 1 when one needs renewing.",
            discussion: """
                Prints the CA, each certificate issued from it (CN, serial, expiry, days left, \
                revoked or not) and the revocation list's next update. A certificate replaced by \
                `renew` shows as "renewed since" and no longer counts, nor does a revoked one.

                Exit status: 0 when nothing expired or ends within --warn-days; 1 when something \
                does (the CA, a certificate in use, or the revocation list), so it can run from cron \
                or a health check; 2 when the folder cannot be read.

                Example:
                  databus certs list --out certs --warn-days 45
                """
        )

        @Option(name: .long, help: "The folder made by `databus certs create` (its CA key is not needed).")
        var out: String

        @Option(name: .customLong("warn-days"), help: "Warn about what ends within this many days.")
        var warnDays = 30

        func run() throws {
            let inventory: CertificateInventory
            do {
                inventory = try CertificateInventory(directory: CertificateDirectory(path: out), warningDays: warnDays)
            } catch {
                throw fail(error, code: 2)
            }
            print(inventory.text())
            if inventory.needsAttention { throw ExitCode(1) }
        }
    }

    struct Renew: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a new certificate (and key) for a component before its certificate expires.",
            discussion: """
                Replaces DIR/NAME/NAME.crt and NAME.key with a new certificate for the same CN, \
                usage and names (a new key of the same type, or the same key with --keep-key). The \
                previous certificate is not revoked: the device keeps working with it until it gets \
                the new folder; revoke it then with `databus certs revoke --serial`. For the broker \
                (NAME broker), replace its files and send it SIGHUP: connected clients stay.

                Examples:
                  databus certs renew --out certs camera-12
                  databus certs renew --out certs broker --days 365
                """
        )

        @Option(name: .long, help: "The folder made by `databus certs create` (its CA key is needed).")
        var out: String

        @Argument(help: "The component folder to renew (a client name, or broker).")
        var name: String

        @Flag(name: .customLong("keep-key"), help: "Keep the component's key instead of making a new one.")
        var keepKey = false

        @Option(help: "Validity of the new certificate, in days (default \(CertificateRequest.defaultDays)).")
        var days: Int?

        func run() throws {
            do {
                let report = try CertificateDirectory(path: out).renew(name, keepKey: keepKey, days: days)
                var lines = [
                    "Renewed \(report.component.name): \(report.component.certificate) (serial \(report.renewed.serialNumber), valid until \(day(report.renewed.notValidAfter)))"
                        + (report.keptKey ? ", same key" : ", new key \(report.component.privateKey)"),
                    "The previous certificate (serial \(report.previous.serialNumber), until \(day(report.previous.notValidAfter))) stays valid; "
                        + "once the device has the new folder: databus certs revoke --out \(out) \(name) --serial \(report.previous.serialNumber) --reason superseded",
                ]
                lines += report.notes.map { "Note: \($0)" }
                print(lines.joined(separator: "\n"))
            } catch {
                throw fail(error)
            }
        }
    }

    struct Enrol: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a camera: its folder and certificate, its ACL lines and, with --password, its password-file line.",
            discussion: """
                Issues DIR/NAME (ca.crt, NAME.crt, NAME.key) from the CA in DIR, as \
                `create --client NAME` does; with --no-certificate the folder holds only ca.crt (for \
                a camera that checks the broker but logs in with a password).

                The ACL lines are `pattern` lines that let each camera read and write only its own \
                topics (lprserver/cameras/%u/...), %u being its username, which is NAME both with \
                use_identity_as_username and with a password: so NAME must be the camera id it \
                publishes under. With --acl-file they are added to that file unless it has them \
                already (they serve every camera); without, they are printed.

                With --password (or --password - to read it from standard input) the camera gets a \
                mosquitto password-file line ($7$): added to --password-file, or printed.

                Examples:
                  databus certs enrol --out certs camera-12 --acl-file /etc/databus/acl
                  databus certs enrol --out certs camera-13 --no-certificate --password - --password-file /etc/databus/passwd --acl-file /etc/databus/acl
                """
        )

        @Option(name: .long, help: "The folder made by `databus certs create` (its CA key is needed).")
        var out: String

        @Argument(help: "The camera's name: its CN, username and camera id.")
        var name: String

        @Flag(name: .customLong("no-certificate"), help: "Issue no client certificate (a camera that logs in with a password).")
        var noCertificate = false

        @Option(name: .customLong("acl-file"), help: "The broker's acl_file to add the camera lines to (created when missing).")
        var aclFile: String?

        @Option(help: "The camera's password (- reads one line from standard input).")
        var password: String?

        @Option(name: .customLong("password-file"), help: "The broker's password_file to add the camera to (created when missing).")
        var passwordFile: String?

        @Option(help: "Validity of the certificate, in days (default \(CertificateRequest.defaultDays)).")
        var days: Int?

        @Flag(help: "An RSA 2048 key instead of ECDSA P-256.")
        var rsa = false

        func validate() throws {
            if passwordFile != nil && password == nil { throw ValidationError("--password-file needs --password") }
        }

        func run() throws {
            do {
                var lines: [String] = []
                let report = try CertificateDirectory(path: out).enrol(
                    camera: name,
                    certificate: !noCertificate,
                    request: CertificateRequest(days: days, rsa: rsa ? true : nil)
                )
                let folder = report.component
                let files = report.hasCertificate ? "ca.crt, \(name).crt, \(name).key" : "ca.crt"
                lines.append("\(folder.created ? "Made" : "Kept") \(folder.folder)/ (\(files)): copy it to the camera")
                lines += report.notes.map { "Note: \($0)" }

                if let aclFile {
                    let added = try CameraEnrolment.addACLLines(to: aclFile)
                    lines.append(
                        added.isEmpty
                            ? "\(aclFile) already has the camera lines (they serve every camera)"
                            : "Added \(added.count) camera lines to \(aclFile) (mosquitto.conf: acl_file \(aclFile))"
                    )
                } else {
                    lines.append("")
                    lines.append("# Camera lines for the broker's acl_file (once, for every camera):")
                    lines += CameraEnrolment.aclLines
                }
                if let password {
                    let secret = password == "-" ? (readLine(strippingNewline: true) ?? "") : password
                    if let passwordFile {
                        try CameraEnrolment.setPassword(username: name, password: secret, in: passwordFile)
                        lines.append("Set \(name)'s password in \(passwordFile) (mosquitto.conf: password_file \(passwordFile))")
                    } else {
                        lines.append("")
                        lines.append("# The line for the broker's password_file:")
                        lines.append(try CameraEnrolment.passwordLine(username: name, password: secret))
                    }
                }
                lines.append("")
                lines.append(
                    "Send the broker SIGHUP to read the files again. The camera connects as \(name) and uses the topics lprserver/cameras/\(name)/..."
                )
                print(lines.joined(separator: "\n"))
            } catch {
                throw fail(error)
            }
        }
    }
}

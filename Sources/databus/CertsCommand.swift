import ArgumentParser
import DatabusTools
import Foundation

/// `databus certs`: a CA of one's own and a certificate per component.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "A CA and TLS certificates for the broker and each component: create, show, list, renew, revoke, enrol.",
        subcommands: [Create.self, Show.self, List.self, Renew.self, Revoke.self, RevocationList.self, Enrol.self]
    )

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create (or reuse) a CA in DIR and issue the broker's and each client's certificate.",
            discussion: """
                Writes one folder per component, ready to copy to the machine that runs it:
                  DIR/ca/ca.crt, ca.key               the CA (ca.key stays where you issue certificates)
                  DIR/broker/ca.crt, broker.crt, broker.key
                  DIR/NAME/ca.crt, NAME.crt, NAME.key for each --client NAME (NAME is the certificate's CN)
                A CA already in DIR is reused, so a later run with another --client adds a client \
                signed by the same CA; existing folders and keys are never overwritten (remove a \
                folder to issue it again). Keys are ECDSA P-256 (RSA 2048 with --rsa), written \
                with mode 0600. Without --host and --ip the broker certificate is for localhost, \
                127.0.0.1 and ::1. Prints the mosquitto.conf lines that use the files.

                A request file lists the same as JSON (flags add to it):
                  {"hosts": ["broker.lan"], "ips": ["10.0.0.5"], "clients": ["backend", "ai-engine", "gpio"], "days": 825, "rsa": false}

                Examples:
                  databus certs create --out certs --host broker.lan --ip 10.0.0.5 --client backend --client ai-engine --client gpio
                  databus certs create --out certs --client camera-12
                  databus certs create --out certs --request certs.json
                """
        )

        @Option(name: .long, help: "The folder to write to (created if needed; an existing CA in it is reused).")
        var out: String

        @Option(name: .customLong("host"), help: "A DNS name of the broker (repeatable). Default: localhost, when no --ip is given either.")
        var hosts: [String] = []

        @Option(
            name: .customLong("ip"),
            help: "An IP address of the broker (repeatable). Default: 127.0.0.1 and ::1, when no --host is given either."
        )
        var ips: [String] = []

        @Option(name: .customLong("client"), help: "Issue a client certificate with this CN into DIR/NAME (repeatable).")
        var clients: [String] = []

        @Option(help: "Validity of the certificates issued now, in days (default \(CertificateRequest.defaultDays); a new CA gets at least 3650).")
        var days: Int?

        @Flag(help: "RSA 2048 keys instead of ECDSA P-256.")
        var rsa = false

        @Option(help: "A JSON file listing hosts, ips, clients, days and rsa.")
        var request: String?

        func run() throws {
            do {
                var wanted = CertificateRequest()
                if let request { wanted = try CertificateRequest.read(file: request) }
                wanted = wanted.merged(with: CertificateRequest(hosts: hosts, ips: ips, clients: clients, days: days, rsa: rsa ? true : nil))
                let report = try CertificateDirectory(path: out).create(wanted)
                print(report.text())
            } catch {
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                throw ExitCode.failure
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a certificate's subject, SANs, issuer, validity, serial and key type.",
            discussion: """
                The subject is printed as use_subject_as_username sees it; with \
                use_identity_as_username the username is the CN. A file with several certificates \
                (a chain, a CA bundle) prints each.

                Example:
                  databus certs show certs/broker/broker.crt
                """
        )

        @Argument(help: "A PEM certificate file.")
        var file: String

        func run() throws {
            let summaries: [CertificateSummary]
            do {
                summaries = try CertificateSummary.read(file: file)
            } catch {
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                throw ExitCode.failure
            }
            print(summaries.map { $0.text() }.joined(separator: "\n\n"))
        }
    }
}

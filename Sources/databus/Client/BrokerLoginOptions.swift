import ArgumentParser
import Foundation

/// How `databus server` and `databus camera` reach and log in to their broker: a URL, a user
/// and password, and the TLS files. Each command names the setting keys they stand for.
struct BrokerLoginOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The broker: mqtt://HOST:PORT or mqtts://HOST:PORT.", valueName: "url"))
    var broker: String?

    @Option(name: [.customShort("u"), .customLong("username")], help: "The user name to log in with.")
    var username: String?

    @Option(name: [.customShort("P"), .customLong("password")], help: "The password to log in with.")
    var password: String?

    @Option(help: ArgumentHelp("The CA certificate (PEM) that signed the broker's certificate.", valueName: "file"))
    var cafile: String?

    @Option(help: ArgumentHelp("The client certificate (PEM), for mutual TLS.", valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("The client certificate's private key (PEM).", valueName: "file"))
    var key: String?

    /// The names a command's settings give to what these flags set.
    struct Keys {
        var host: String
        var port: String
        var tls: String
        var username: String
        var password: String
        var caFile: String
        var certificate: String
        var privateKey: String
    }

    /// The flags given, as settings under `keys`.
    /// - Throws: `invalidBroker(url)` when `--broker` is not mqtt(s)://HOST[:PORT] (tcp:// and
    ///   ssl:// also do).
    func values(_ keys: Keys, invalidBroker: (String) -> any Error) throws -> [String: String] {
        var values: [String: String] = [:]
        if let broker {
            guard let components = URLComponents(string: broker), let scheme = components.scheme, ["mqtt", "mqtts", "tcp", "ssl"].contains(scheme),
                let host = components.host, !host.isEmpty
            else { throw invalidBroker(broker) }
            let tls = scheme == "mqtts" || scheme == "ssl"
            values[keys.host] = host
            values[keys.port] = String(components.port ?? (tls ? 8883 : 1883))
            values[keys.tls] = tls ? "true" : "false"
            if let user = components.user { values[keys.username] = user }
            if let password = components.password { values[keys.password] = password }
        }
        if let username { values[keys.username] = username }
        if let password { values[keys.password] = password }
        if let cafile { values[keys.caFile] = cafile }
        if let cert { values[keys.certificate] = cert }
        if let key { values[keys.privateKey] = key }
        if cafile != nil || cert != nil, broker == nil { values[keys.tls] = "true" }
        return values
    }
}

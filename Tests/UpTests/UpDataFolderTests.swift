import DatabusTestSupport
import DatabusTools
import Foundation
import MQTTBroker
import Testing

@Suite("databus up's data folder")
struct UpDataFolderTests {
    @Test(
        "first start makes the certificates, a password file with the server's user, the ACL, mosquitto.conf and 0600 tokens; a second start reuses them"
    )
    func makesThenReuses() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let folder = UpDataFolder(path: directory.file("data"))
        let first = try folder.prepare()
        #expect(first.madeAdminToken)
        #expect(first.adminToken.hasPrefix("dbadm_") && first.adminToken.count == 6 + 64)
        #expect(first.readOnlyToken.hasPrefix("dbro_"))
        for file in [folder.adminTokenFile, folder.readOnlyTokenFile, folder.serverPasswordFile] {
            let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file)")
        }
        let passwords = try PasswordFile(contentsOf: folder.passwordFile)
        #expect(passwords.verify(username: UpDataFolder.serverUsername, password: Array(first.serverPassword.utf8)))
        let configuration = try folder.brokerConfiguration(mqtt: nil, mqtts: nil)
        #expect(configuration.listeners.map(\.port) == [1883])
        #expect(configuration.listeners.first?.address == "127.0.0.1")
        #expect(configuration.allowAnonymous)
        #expect(configuration.persistence)
        #expect(configuration.security.passwordFile == folder.passwordFile)
        #expect(configuration.security.aclFile == folder.aclFile)
        try folder.checkListeners(configuration)

        #expect(try folder.prepare().madeAdminToken, "not shown yet: a first start that never became ready shows it next time")
        folder.markTokenShown()
        let second = try folder.prepare()
        #expect(!second.madeAdminToken)
        #expect(second.adminToken == first.adminToken)
        #expect(second.serverPassword == first.serverPassword)
        #expect(second.made.isEmpty, "\(second.made)")
    }

    @Test("anonymous clients only while every listener is on loopback; client-certificate listeners and password-only brokers may listen anywhere")
    func anonymousOnlyOnLoopback() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let folder = UpDataFolder(path: directory.file("data"))
        _ = try folder.prepare()
        try folder.checkListeners(try folder.brokerConfiguration(mqtt: ("::1", 1883), mqtts: nil))
        try folder.checkListeners(try folder.brokerConfiguration(mqtt: ("127.0.0.1", 1883), mqtts: ("0.0.0.0", 8883)))
        #expect {
            try folder.checkListeners(try folder.brokerConfiguration(mqtt: ("0.0.0.0", 1883), mqtts: nil))
        } throws: { error in
            let text = "\(error)"
            return text.contains("0.0.0.0:1883") && text.contains("allow_anonymous false") && text.contains("--mqtts")
                && text.contains(folder.passwordFile)
        }
        var configuration = try folder.brokerConfiguration(mqtt: ("192.0.2.1", 1883), mqtts: nil)
        #expect(throws: UpSetupError.self) { try folder.checkListeners(configuration) }
        configuration.allowAnonymous = false
        try folder.checkListeners(configuration)
        configuration.listeners.removeAll()
        #expect(throws: UpSetupError.self) { try folder.checkListeners(configuration) }
    }
}

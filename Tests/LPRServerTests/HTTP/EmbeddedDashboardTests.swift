import Foundation
import HummingbirdTesting
import Testing

@testable import LPRServer

/// The dashboard is compiled into the binary (a `databus` copied to another machine serves it
/// without a resource folder beside it): the compiled copy is the folder's, byte for byte.
@Suite("Embedded dashboard")
struct EmbeddedDashboardTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources/LPRServer/Web")

    static func folderFiles() throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where !name.hasPrefix(".") {
            files[name] = try Data(contentsOf: folder.appendingPathComponent(name))
        }
        return files
    }

    @Test("the compiled-in files are those of Sources/LPRServer/Web (else run scripts/embed-web)")
    func embeddedMatchesFolder() throws {
        let folder = try Self.folderFiles()
        #expect(folder.count >= 4)
        #expect(Set(EmbeddedDashboard.files.map(\.name)) == Set(folder.keys), "run scripts/embed-web")
        for (name, data) in folder {
            let served = try #require(DashboardFiles.shared.file(named: name), "\(name) is not compiled in: run scripts/embed-web")
            #expect(Data(served.bytes.readableBytesView) == data, "\(name) differs from its compiled-in copy: run scripts/embed-web")
        }
    }

    @Test("/ and every file of the dashboard are served from the binary with their content type")
    func servedFromBinary() async throws {
        let folder = try Self.folderFiles()
        try await withAPI(.router) { _, client in
            let index = try await client.call(.get, "/", token: nil)
            #expect(index.status == .ok)
            #expect(index.headers[.contentType] == "text/html; charset=utf-8")
            #expect(Data(index.body.readableBytesView) == folder["index.html"])
            let types = [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8"), ("favicon.svg", "image/svg+xml")]
            for (name, type) in types {
                let response = try await client.call(.get, "/" + name, token: nil)
                #expect(response.status == .ok, "\(name)")
                #expect(response.headers[.contentType] == type, "\(name)")
                #expect(Data(response.body.readableBytesView) == folder[name], "\(name)")
            }
        }
    }
}

import Foundation
import Hummingbird
import NIOCore

/// The dashboard's files (`Web/` in the package's resources), read once and served from memory:
/// no CDN, nothing fetched from outside (edge sites are offline).
final class DashboardFiles: Sendable {
    struct File: Sendable {
        let bytes: ByteBuffer
        let contentType: String

        var response: Response {
            Response(
                status: .ok,
                headers: [
                    .contentType: contentType, .cacheControl: "no-cache", .init("X-Content-Type-Options")!: "nosniff",
                    .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
                ],
                body: ResponseBody(byteBuffer: bytes)
            )
        }
    }

    static let shared = DashboardFiles()

    private let files: [String: File]

    private init() {
        var files: [String: File] = [:]
        if let folder = Bundle.module.url(forResource: "Web", withExtension: nil),
            let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path)
        {
            for name in names {
                guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent(name).path) else { continue }
                files[name] = File(bytes: ByteBuffer(bytes: data), contentType: Self.contentType(of: name))
            }
        }
        self.files = files
    }

    func file(named name: String) -> File? { files[name] }

    /// `/` is `index.html`; every other file by its name.
    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in
            guard let index = self.file(named: "index.html") else { throw APIError.notFound("path", "the dashboard is missing from this build") }
            return index.response
        }
        for name in files.keys where name != "openapi.json" {
            router.get(RouterPath(name)) { _, _ in self.files[name]!.response }
        }
    }

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "json": "application/json; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        default: "application/octet-stream"
        }
    }
}

import Foundation
import Hummingbird
import NIOCore

/// The dashboard's files (`Web/`, compiled into the binary by `scripts/embed-web` so that a
/// `databus` binary copied to another machine still serves them), decoded once and served from
/// memory: no CDN, nothing fetched from outside (edge sites are offline).
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
        for (name, base64) in EmbeddedDashboard.files {
            guard let data = Data(base64Encoded: base64, options: .ignoreUnknownCharacters) else { continue }
            files[name] = File(bytes: ByteBuffer(bytes: data), contentType: Self.contentType(of: name))
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

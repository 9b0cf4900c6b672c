import Foundation
import Hummingbird
import LPRModel

/// The REST API's handlers: each reads and checks its input (a 400 names the field), calls
/// the server or its store, and answers JSON.
struct APIRoutes: Sendable {
    let server: LPRServer
    let configuration: LPRHTTPConfiguration

    /// `/health`, `/metrics` and `/api/openapi.json`: no token.
    func addPublicRoutes(to router: Router<BasicRequestContext>) {
        router.get("health") { _, _ in
            Response.json(server.systemHealth().json)
        }
        router.get("metrics") { _, _ in
            let text = await configuration.metrics()
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: text))
            )
        }
        router.get("api/openapi.json") { _, _ in
            guard let document = DashboardFiles.shared.file(named: "openapi.json") else {
                throw APIError.notFound("path", "the OpenAPI document is missing from this build")
            }
            return document.response
        }
    }

    /// Every operation the server answers, as the OpenAPI document lists them; a known path asked
    /// with another method is a 405 naming the allowed ones.
    static let operations: [(method: String, path: String)] = [
        ("GET", "/health"), ("GET", "/metrics"), ("GET", "/api/openapi.json"),
        ("GET", "/api/detections"), ("GET", "/api/detections/{message_id}"),
        ("GET", "/api/cameras"), ("GET", "/api/cameras/{id}"), ("PUT", "/api/cameras/{id}/config"),
        ("POST", "/api/cameras/{id}/control"), ("POST", "/api/cameras/{id}/health/request"),
        ("GET", "/api/watchlist"), ("POST", "/api/watchlist"), ("PUT", "/api/watchlist/{entry_id}"), ("DELETE", "/api/watchlist/{entry_id}"),
        ("GET", "/api/alerts"), ("GET", "/api/checkpoints"), ("GET", "/api/stats"), ("GET", "/api/events"),
    ]

    /// The methods ``operations`` allow on a request path (`{...}` matches one segment).
    static func allowedMethods(for path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        return operations.filter { operation in
            let pattern = operation.path.split(separator: "/", omittingEmptySubsequences: true)
            guard pattern.count == segments.count else { return false }
            return zip(pattern, segments).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
        }.map(\.method)
    }

    func addAPIRoutes(to api: RouterGroup<BasicRequestContext>) {
        api.get("detections") { request, _ in try await listDetections(request) }
        api.get("detections/{message_id}") { _, context in try await detection(context) }
        api.get("cameras") { _, _ in try await listCameras() }
        api.get("cameras/{id}") { _, context in try await camera(context) }
        api.put("cameras/{id}/config") { request, context in try await setConfiguration(request, context) }
        api.post("cameras/{id}/control") { request, context in try await sendCommand(request, context) }
        api.post("cameras/{id}/health/request") { _, context in try await requestHealth(context) }
        api.get("watchlist") { _, _ in listWatchlist() }
        api.post("watchlist") { request, _ in try await addWatchlistEntry(request) }
        api.put("watchlist/{entry_id}") { request, context in try await replaceWatchlistEntry(request, context) }
        api.delete("watchlist/{entry_id}") { _, context in try await deleteWatchlistEntry(context) }
        api.get("alerts") { request, _ in try await listAlerts(request) }
        api.get("checkpoints") { _, _ in try await listCheckpoints() }
        api.get("stats") { request, _ in try await statistics(request) }
        api.get("events") { _, _ in eventStream() }
    }

    /// A path parameter (always present: the route names it).
    func parameter(_ name: String, _ context: BasicRequestContext) throws -> String {
        guard let value = context.parameters.get(name), !value.isEmpty else { throw APIError.badRequest(name, "missing") }
        return value.removingPercentEncoding ?? value
    }
}

import Foundation
import Hummingbird
import LPRModel

extension APIRoutes {
    /// `GET /api/watchlist`: `{"version", "items"}`.
    func listWatchlist() -> Response {
        let (version, entries) = server.watchlist()
        return Response.json(["version": .int(version), "items": .array(entries.map { .object($0.json) })])
    }

    /// `POST /api/watchlist`: a new entry (an id is made when the body has none); 201 with it.
    /// In force for the next detection once answered, and published on `blacklist/updates`.
    func addWatchlistEntry(_ request: Request) async throws -> Response {
        let body = Self.blanksAsAbsent(try await request.jsonObject())
        let entry: WatchlistEntry
        do { entry = try WatchlistEntry(validating: body, requireID: false) } catch { throw APIError.invalid(error) }
        if !entry.id.isEmpty, server.watchlist().entries.contains(where: { $0.id == entry.id }) {
            throw APIError(
                .conflict,
                code: "conflict",
                message: "an entry with id \"\(entry.id)\" exists; PUT /api/watchlist/\(entry.id) replaces it",
                field: "id"
            )
        }
        let saved = try await server.saveWatchlistEntry(entry)
        return Response.json(saved.json, status: .created)
    }

    /// `PUT /api/watchlist/{entry_id}`: replaces the entry (200) or adds it with that id (201);
    /// the path names the entry, whatever `id` the body carries.
    func replaceWatchlistEntry(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try parameter("entry_id", context)
        var body = Self.blanksAsAbsent(try await request.jsonObject())
        if let bodyID = body["id"], bodyID != .null, bodyID.stringValue == nil {
            throw APIError.badRequest("id", "expected a string, found \(bodyID.typeName)")
        }
        body["id"] = .string(id)
        let entry: WatchlistEntry
        do { entry = try WatchlistEntry(validating: body) } catch { throw APIError.invalid(error) }
        let existed = server.watchlist().entries.contains { $0.id == id }
        let saved = try await server.saveWatchlistEntry(entry)
        return Response.json(saved.json, status: existed ? .ok : .created)
    }

    /// An empty `expires_at` or `country` means none, as `null` does.
    static func blanksAsAbsent(_ body: JSONObject) -> JSONObject {
        var body = body
        for key in ["expires_at", "country", "id"] where body[key] == .string("") { body[key] = .null }
        return body
    }

    /// `DELETE /api/watchlist/{entry_id}`: 204, or 404 when there is no such entry.
    func deleteWatchlistEntry(_ context: BasicRequestContext) async throws -> Response {
        let id = try parameter("entry_id", context)
        guard try await server.deleteWatchlistEntry(id: id) else {
            throw APIError.notFound("entry_id", "no watch-list entry with id \"\(id)\"")
        }
        return Response(status: .noContent)
    }
}

import Foundation
import Hummingbird
import LPRModel

extension APIRoutes {
    /// `GET /api/detections?plate=&fuzzy=&camera=&checkpoint=&since=&until=&limit=&cursor=`:
    /// newest first, one page at a time. `plate` matches the normalised plate exactly, or its
    /// beginning when it ends with `*`; `fuzzy=true` also finds plates within the watch-list's
    /// distance after folding OCR confusions.
    func listDetections(_ request: Request) async throws -> Response {
        let query = QueryParameters(request)
        var search = DetectionQuery()
        let fuzzy = try query.bool("fuzzy") ?? false
        if let plate = query.string("plate") {
            let prefix = plate.hasSuffix("*")
            let text = prefix ? String(plate.dropLast()) : plate
            guard !PlateNormalizer.normalize(text).isEmpty else { throw APIError.badRequest("plate", "has no letters or digits") }
            if fuzzy {
                guard !prefix else { throw APIError.badRequest("fuzzy", "cannot be combined with a prefix search (plate ending in *)") }
                search.plate = .fuzzy(text, maximumDistance: server.configuration.watchlistMaximumDistance)
            } else {
                search.plate = prefix ? .prefix(text) : .exact(text)
            }
        } else if fuzzy {
            throw APIError.badRequest("fuzzy", "needs a plate to search for")
        }
        search.camera = query.string("camera")
        search.checkpoint = query.string("checkpoint")
        search.since = try query.date("since")
        search.until = try query.date("until")
        if let since = search.since, let until = search.until, until <= since {
            throw APIError.badRequest("until", "must be after since")
        }
        search.limit = try query.integer("limit", in: 1...1000) ?? 50
        if let cursor = query.string("cursor") {
            guard let before = Self.decodeCursor(cursor) else {
                throw APIError.badRequest("cursor", "not a cursor this API gave (pass next_cursor back as it came)")
            }
            search.before = before
        }
        let page = try await server.repository.detections(matching: search)
        return Response.json([
            "items": .array(page.items.map { .object($0.json) }),
            "next_cursor": page.nextBefore.map { .string(Self.encodeCursor($0)) } ?? .null,
        ])
    }

    /// `GET /api/detections/{message_id}`.
    func detection(_ context: BasicRequestContext) async throws -> Response {
        let messageID = try parameter("message_id", context)
        guard let detection = try await server.repository.detection(messageID: messageID) else {
            throw APIError.notFound("message_id", "no detection with message_id \"\(messageID)\"")
        }
        return Response.json(detection.json)
    }

    /// Cursors are opaque to clients: `c` and the store's sequence.
    static func encodeCursor(_ sequence: Int64) -> String { "c\(sequence)" }

    static func decodeCursor(_ cursor: String) -> Int64? {
        guard cursor.first == "c", let sequence = Int64(cursor.dropFirst()), sequence > 0 else { return nil }
        return sequence
    }
}

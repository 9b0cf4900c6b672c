import Foundation
import Hummingbird
import LPRModel

extension APIRoutes {
    /// `GET /api/detections?plate=&fuzzy=&camera=&checkpoint=&since=&until=&limit=&cursor=`:
    /// newest first, one page at a time. `plate` matches the normalised plate exactly, or its
    /// beginning when it ends with `*`; `fuzzy=true` also finds plates within the watch-list's
    /// distance after folding OCR confusions (a trailing `*` is then ignored).
    func listDetections(_ request: Request) async throws -> Response {
        let query = QueryParameters(request)
        var search = DetectionQuery()
        let fuzzy = try query.bool("fuzzy") ?? false
        var matchesNothing = false
        // `fuzzy` refines a plate search; without a plate there is nothing to refine.
        if let plate = query.string("plate") {
            let prefix = plate.hasSuffix("*")
            let text = prefix ? String(plate.dropLast()) : plate
            if PlateNormalizer.normalize(text).isEmpty {
                // No letter or digit: no stored plate can match.
                matchesNothing = true
            } else if fuzzy {
                search.plate = .fuzzy(text, maximumDistance: server.configuration.watchlistMaximumDistance)
            } else {
                search.plate = prefix ? .prefix(text) : .exact(text)
            }
        }
        search.camera = query.string("camera")
        search.checkpoint = query.string("checkpoint")
        search.since = try query.date("since")
        search.until = try query.date("until")
        search.limit = try query.integer("limit", in: 1...1000) ?? 50
        if let cursor = try query.typed("cursor", expected: "the next_cursor of a previous page") {
            guard let before = Self.decodeCursor(cursor) else {
                throw APIError.badRequest("cursor", "not a cursor this API gave (pass next_cursor back as it came)")
            }
            search.before = before
        }
        if let since = search.since, let until = search.until, until <= since { matchesNothing = true }
        if matchesNothing {
            // No letter or digit to look for, or an empty time range: nothing can match.
            return Response.json(["items": [], "next_cursor": .null])
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

import Foundation
import Hummingbird
import LPRModel

extension APIRoutes {
    /// `GET /api/alerts?since=&level=&limit=`: newest first; `level` keeps that level and above.
    func listAlerts(_ request: Request) async throws -> Response {
        let query = QueryParameters(request)
        let since = try query.date("since")
        let level = try query.oneOf("level", Alert.Level.allCases.map(\.rawValue)).flatMap(Alert.Level.init(rawValue:))
        let limit = try query.integer("limit", in: 1...1000) ?? 100
        let alerts = try await server.repository.alerts(since: since, level: level, limit: limit)
        return Response.json(["items": .array(alerts.map { .object($0.json) })])
    }

    /// `GET /api/checkpoints`: each checkpoint's cameras and its last hour's figures.
    func listCheckpoints() async throws -> Response {
        let now = Date()
        let cameras = try await server.repository.cameras().filter(\.isKnown)
        let figures = try await server.repository.checkpointFigures(since: now.addingTimeInterval(-3600))
        let names = Set(cameras.compactMap(\.checkpointID)).union(figures.map(\.checkpointID)).sorted()
        let items: [JSONValue] = names.map { name in
            let members = cameras.filter { $0.checkpointID == name }
            let figure = figures.first { $0.checkpointID == name }
            return [
                "checkpoint_id": .string(name),
                "cameras": .array(members.map { ["camera_id": .string($0.cameraID), "online": $0.online.map(JSONValue.bool) ?? .null] }),
                "cameras_online": .int(members.filter { $0.online == true }.count),
                "detections_last_hour": .int(figure?.detections ?? 0),
                "unique_plates_last_hour": .int(figure?.uniquePlates ?? 0),
                "watchlist_hits_last_hour": .int(figure?.watchlistHits ?? 0),
                "mean_confidence": figure?.meanConfidence.map(JSONValue.double) ?? .null,
            ]
        }
        return Response.json(["items": .array(items)])
    }

    /// `GET /api/stats?since=&until=&camera=`: detections per hour per camera (by the time they
    /// were received), the last 24 hours by default; an empty or reversed range has no counts.
    func statistics(_ request: Request) async throws -> Response {
        let query = QueryParameters(request)
        let until = try query.date("until") ?? Date()
        let since = try query.date("since") ?? until.addingTimeInterval(-86_400)
        let camera = query.string("camera")
        let counts = since < until ? try await server.repository.hourlyCounts(since: since, until: until, camera: camera) : []
        return Response.json([
            "since": .timestamp(since),
            "until": .timestamp(until),
            "items": .array(counts.map { ["hour": .timestamp($0.hour), "camera_id": .string($0.cameraID), "count": .int($0.count)] }),
        ])
    }
}

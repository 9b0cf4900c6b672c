import Foundation
import LPRModel
import Testing

@testable import LPRServer

@Suite("Live feed wire form and route table")
struct ServerSentEventTests {
    @Test("each server event is one SSE message: its name and one data line of compact JSON")
    func wireForm() throws {
        let alert = Alert(
            alertID: "a1",
            level: .critical,
            kind: .watchlistHit,
            cameraID: "CAM001",
            message: "line one\nline two",
            timestamp: Date(timeIntervalSince1970: 0)
        )
        let text = ServerSentEvent(.alert(alert)).text
        #expect(text.hasPrefix("event: alert\ndata: {"))
        #expect(text.hasSuffix("}\n\n"))
        #expect(text.split(separator: "\n").count == 2, "a line break in the data is escaped, not sent")
        let data = try JSONObject.parse(Array(text.split(separator: "\n")[1].dropFirst(6).utf8))
        #expect(data["message"] == "line one\nline two")
        #expect(
            ServerSentEvent(.cameraStatus(cameraID: "C1", online: false)).text
                == "event: camera\ndata: {\"camera_id\":\"C1\",\"change\":\"status\",\"online\":false}\n\n"
        )
        #expect(ServerSentEvent(.commandFinished(cameraID: "C1", messageID: "m", status: "timeout")).name == "command")
    }

    @Test("a known path asked with another method is told the methods it answers")
    func allowedMethods() {
        #expect(APIRoutes.allowedMethods(for: "/api/watchlist") == ["GET", "POST"])
        #expect(APIRoutes.allowedMethods(for: "/api/watchlist/abc") == ["PUT", "DELETE"])
        #expect(APIRoutes.allowedMethods(for: "/api/cameras/CAM001/control") == ["POST"])
        #expect(APIRoutes.allowedMethods(for: "/api/cameras/CAM001/nothing").isEmpty)
        #expect(APIRoutes.allowedMethods(for: "/nothing").isEmpty)
    }

    @Test("cursors are opaque and checked")
    func cursors() {
        #expect(APIRoutes.decodeCursor(APIRoutes.encodeCursor(42)) == 42)
        #expect(APIRoutes.decodeCursor("42") == nil)
        #expect(APIRoutes.decodeCursor("c0") == nil)
        #expect(APIRoutes.decodeCursor("c-5") == nil)
        #expect(APIRoutes.decodeCursor("cx") == nil)
    }
}

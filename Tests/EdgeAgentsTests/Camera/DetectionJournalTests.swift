import DatabusTestSupport
import Foundation
import LPRModel
import MQTTClient
import Testing

@testable import EdgeAgents

@Suite("Camera agent: the detection journal")
struct DetectionJournalTests {
    @Test("detections stay until acknowledged, across a reopen; acks return their source files; rejections move aside")
    func lifecycle() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = folder.file("journal.sqlite")
        do {
            let journal = try DetectionJournal(path: path)
            let added = try await journal.insert([
                .init(messageID: "a", payload: Array("{\"a\":1}".utf8), outboxed: true, source: "/spool/a.json"),
                .init(messageID: "b", payload: Array("{\"b\":2}".utf8), outboxed: false),
                .init(messageID: "c", payload: Array("{}".utf8), outboxed: false, source: "/spool/c.json"),
            ])
            #expect(added == ["a", "b", "c"])
            #expect(try await journal.insert([.init(messageID: "a", payload: [], outboxed: false)]).isEmpty)
            try await journal.markOutboxed(["b"])
        }
        let journal = try DetectionJournal(path: path)
        let pending = try await journal.pending()
        #expect(pending.outboxed == ["a", "b"])
        #expect(pending.backlog == ["c"])
        #expect(try await journal.payloads(["a", "zzz"]) == ["a": Array("{\"a\":1}".utf8)])
        #expect(try await journal.pendingSources() == ["/spool/a.json", "/spool/c.json"])
        #expect(try await journal.complete(["a", "b"]) == ["/spool/a.json"])
        #expect(try await journal.reject("c", errors: #"[{"path":"x","reason":"y"}]"#) == "/spool/c.json")
        #expect(try await journal.pendingCount() == 0)
        let rejections = try await journal.rejections()
        #expect(rejections.map(\.messageID) == ["c"])
        #expect(rejections.first?.errors.contains("reason") == true)
    }
}

@Suite("Camera agent: what a restart takes up")
struct CameraAgentRestartTests {
    func open(_ folder: TemporaryDirectory) async throws -> CameraAgent {
        try await CameraAgent.open(
            options: CameraAgent.Options(cameraID: "CAM001", checkpointID: "CP001", dataDirectory: folder.file("camera")),
            mqtt: .init(host: "127.0.0.1", port: 1, clientIdentifier: ""),
            logger: cameraTestLogger
        )
    }

    @Test("detections taken without a broker are still there for the next agent on the same folder; a repeat is not taken twice")
    func journalSurvives() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        do {
            let agent = try await open(folder)
            for id in ["r1", "r2", "r3"] { #expect(try await agent.submit(seedDetection(id: id)) == .accepted(messageID: id)) }
            #expect(try await agent.submit(seedDetection(id: "r2")) == .alreadyPending(messageID: "r2"))
            #expect(await agent.undelivered == 3)
        }
        let again = try await open(folder)
        #expect(await again.undelivered == 3)
        #expect(try await again.submit(seedDetection(id: "r1")) == .alreadyPending(messageID: "r1"))
        #expect(await again.counts.accepted == 0)
    }

    @Test("unreadable kept configuration and watch-list files are set aside, not fatal")
    func unreadableFiles() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try folder.makeWritableFolder("camera")
        try folder.write("camera/config.json", "{ half a configur")
        try folder.write("camera/watchlist.json", #"{"version": "x"}"#)
        let agent = try await open(folder)
        #expect(await agent.appliedConfiguration == nil)
        #expect(await agent.watchlistVersion == nil)
        #expect(FileManager.default.fileExists(atPath: folder.file("camera/config.json.bad")))
        #expect(FileManager.default.fileExists(atPath: folder.file("camera/watchlist.json.bad")))
    }
}

@Suite("Camera simulation: watch-listed plates")
struct CameraSimulationWatchlistTests {
    @Test("a simulated camera shows plates of its edge watch-list now and then, and matches them at the edge")
    func listedPlatesShowUp() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let agent = try await CameraAgent.open(
            options: CameraAgent.Options(cameraID: "CAM001", checkpointID: "CP001", dataDirectory: folder.file("camera")),
            mqtt: .init(host: "127.0.0.1", port: 1, clientIdentifier: ""),
            logger: cameraTestLogger
        )
        let update = WatchlistUpdate(version: 2, timestamp: Date(), entries: [WatchlistEntry(id: "w1", plate: "LISTED-1")])
        await agent.receiveWatchlist(JSONValue.object(update.json).jsonBytes)
        #expect(await agent.watchlistPlates == ["LISTED-1"])
        let simulator = CameraSimulator(cameraID: "CAM001", checkpointID: "CP001", seed: 8, options: .init(ocrConfusionRate: 0, watchlistRate: 0.1))
        await CameraSimulation.drive(agent, simulator: simulator, rate: 0, limit: 200, logger: cameraTestLogger)
        let counts = await agent.counts
        #expect(counts.accepted == 200)
        #expect((5...60).contains(counts.watchlistMatches))
    }
}
